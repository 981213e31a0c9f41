// `npm run demo`: starts two local registries (the Debian docker-registry binary), pushes a few sample
// images to the first, writes a config that maps them into a namespace of the second, and runs
// `ferry sync` on it, printing the report. Everything lives in a temporary directory.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildImage, buildIndex, pushImage, startRegistry } from '../test/helpers/index.js';

const work = mkdtempSync(join(tmpdir(), 'ferry-demo-'));
const source = await startRegistry({ auth: 'none' });
const destination = await startRegistry({ auth: 'token' });
try {
  console.error(`source registry      ${source.url} (no auth)`);
  console.error(`destination registry ${destination.url} (token auth, user ferry)`);
  const base = [64 * 1024, 256 * 1024];
  const shared = base.map((n) => Buffer.alloc(n, 7));
  const web = buildImage({ layers: [...shared, 128 * 1024], format: 'oci' });
  const api = buildImage({ layers: [...shared, 96 * 1024], format: 'docker' });
  const armWeb = buildImage({ layers: [...shared, 100 * 1024], format: 'oci', platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
  const amdWeb = buildImage({ layers: [...shared, 110 * 1024], format: 'oci', platform: { os: 'linux', architecture: 'amd64' } });
  await pushImage(source, 'library/web', '1.0', web);
  await pushImage(source, 'team-a/api', 'v2', api);
  await pushImage(source, 'team-a/tools/web-multi', '2.0', buildIndex([amdWeb, armWeb], 'oci'));
  console.error('pushed library/web:1.0, team-a/api:v2, team-a/tools/web-multi:2.0 (two platforms)');

  const configFile = join(work, 'ferry.yaml');
  writeFileSync(
    configFile,
    `registries:
  idc:
    url: ${source.url}
  cloud:
    url: ${destination.url}
    username: ferry
    password: \${DEMO_PASSWORD}
transfer:
  concurrency: 4
  stateDir: ${join(work, 'state')}
rules:
  - name: idc-to-cloud
    source: idc
    destination: cloud
    destinationNamespace: migrated
    flatten: all
`,
  );
  console.error(`config: ${configFile}\n`);
  const ferry = join(import.meta.dirname, '..', 'bin', 'ferry.js');
  const env = { ...process.env, DEMO_PASSWORD: 's3cret', FERRY_LOG_LEVEL: process.env.FERRY_LOG_LEVEL ?? 'warn' };
  // Asynchronous on purpose: the token issuer of the destination registry runs in this process and
  // must keep answering while ferry runs.
  const sync = () =>
    new Promise<number>((resolve) => {
      spawn(process.execPath, [ferry, 'sync', '--config', configFile], { stdio: ['ignore', 'inherit', 'inherit'], env }).on('exit', (code) => resolve(code ?? 1));
    });
  const first = await sync();
  console.error('\nrunning the same sync again (nothing left to copy):');
  await sync();
  process.exitCode = first;
} finally {
  await source.stop();
  await destination.stop();
  rmSync(work, { recursive: true, force: true });
}

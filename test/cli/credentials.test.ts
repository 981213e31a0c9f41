// Logins from where docker/podman/skopeo users keep them, through the real CLI against a registry
// with htpasswd (Basic) auth: a credential helper (fake docker-credential-<name> script), a
// containers-auth.json file for `ferry copy` without a config, and skopeo's --src-creds/--dest-creds.
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { type TestRegistry, buildImage, getManifest, pushImage, randomBlob, startRegistry } from '../helpers/index.js';
import { runFerry } from './run.js';

let source: TestRegistry;
let destination: TestRegistry;
const dir = mkdtempSync(join(tmpdir(), 'ferry-cli-creds-'));
const bin = join(dir, 'bin');
let digest: string;

function env(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  // A HOME of its own: the machine's ~/.docker never leaks into the test.
  return { PATH: `${bin}:${process.env.PATH}`, HOME: join(dir, 'home'), DOCKER_CONFIG: undefined, REGISTRY_AUTH_FILE: undefined, XDG_RUNTIME_DIR: undefined, ...extra };
}

beforeAll(async () => {
  [source, destination] = await Promise.all([startRegistry({ auth: 'basic' }), startRegistry({ auth: 'basic' })]);
  digest = (await pushImage(source, 'library/app', '1.0', buildImage({ layers: [randomBlob(4000)] }))).digest;
  mkdirSync(bin);
  // Knows both registries (the test users are ferry / s3cret).
  const helper = join(bin, 'docker-credential-fake');
  writeFileSync(
    helper,
    `#!/bin/sh
read -r server
case "$server" in
  ${source.host}|${destination.host}) printf '{"ServerURL":"%s","Username":"ferry","Secret":"s3cret"}' "$server" ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
`,
  );
  chmodSync(helper, 0o755);
}, 60_000);

afterAll(async () => {
  await Promise.all([source?.stop(), destination?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

describe('stored credentials and --src-creds/--dest-creds', { timeout: 150_000 }, () => {
  it('sync logs in through credsStore for registries whose config has no username; no secret in the debug log', async () => {
    const dockerDir = join(dir, 'docker');
    mkdirSync(dockerDir, { recursive: true });
    writeFileSync(join(dockerDir, 'config.json'), JSON.stringify({ credsStore: 'fake' }));
    const file = join(dir, 'ferry.yaml');
    writeFileSync(
      file,
      stringify({
        registries: { src: { url: source.url }, dst: { url: destination.url } },
        transfer: { retries: 0, stateDir: join(dir, 'state') },
        rules: [{ name: 'r', source: 'src', destination: 'dst', destinationNamespace: 'm' }],
      }),
    );
    const res = await runFerry(['--log-level', 'debug', 'sync', '--config', file, '--output', 'json'], { env: env({ DOCKER_CONFIG: dockerDir }) });
    expect(res.code, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout).totals.artifacts.copied).toBe(1);
    expect((await getManifest(destination, 'm/library/app', '1.0'))?.digest).toBe(digest);
    expect(res.stderr).toMatch(/using stored registry credentials/);
    expect(res.stderr).toContain('docker-credential-fake');
    expect(res.stderr).not.toContain('s3cret');
    expect(Buffer.from(res.stderr).toString()).not.toContain(Buffer.from('ferry:s3cret').toString('base64'));
  });

  it('copy without a config uses REGISTRY_AUTH_FILE (containers-auth.json)', async () => {
    const authFile = join(dir, 'auth.json');
    const auth = Buffer.from('ferry:s3cret').toString('base64');
    writeFileSync(authFile, JSON.stringify({ auths: { [source.host]: { auth }, [destination.host]: { auth } } }));
    const res = await runFerry(['copy', `${source.host}/library/app:1.0`, `${destination.host}/fromfile/app`, '--quiet'], { env: env({ REGISTRY_AUTH_FILE: authFile }) });
    expect(res.code, res.stderr).toBe(0);
    expect((await getManifest(destination, 'fromfile/app', '1.0'))?.digest).toBe(digest);
  });

  it('--src-creds / --dest-creds log in like skopeo; refused ones exit 3 without echoing them', async () => {
    const ok = await runFerry(['copy', `${source.host}/library/app:1.0`, `${destination.host}/flags/app:1`, '--src-creds', 'ferry:s3cret', '--dest-creds', 'ferry:s3cret', '--quiet'], { env: env({}) });
    expect(ok.code, ok.stderr).toBe(0);
    expect((await getManifest(destination, 'flags/app', '1'))?.digest).toBe(digest);
    const [refused, malformed] = await Promise.all([
      runFerry(['copy', `${source.host}/library/app:1.0`, `${destination.host}/flags/app:2`, '--src-creds', 'ferry:s3cret', '--dest-creds', 'ferry:not-the-password', '-o', 'json'], { env: env({}) }),
      runFerry(['copy', `${source.host}/library/app:1.0`, `${destination.host}/flags/app:2`, '--src-creds', 'justauser'], { env: env({}) }),
    ]);
    expect(refused.code).toBe(3);
    expect(JSON.parse(refused.stdout)).toMatchObject({ status: 'error', exitCode: 3 });
    expect(refused.stdout + refused.stderr).not.toContain('not-the-password');
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toMatch(/--src-creds: expected USERNAME:PASSWORD/);
  });
});

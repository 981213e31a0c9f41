// Sync between the two registry:2 containers of docker-compose.test.yml (one without auth, one with
// htpasswd), through the CLI and the API. Runs only where those registries are given
// (FERRY_TEST_REGISTRY_URL / FERRY_TEST_REGISTRY_AUTH_URL, set by the compose file); the rest of the
// suite covers the same paths with the local docker-registry binary. The registries are shared and
// long-lived, so every run writes under a namespace of its own.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { PreflightError, createFerry } from '../../src/index.js';
import { type RegistryEndpoint, buildImage, getManifest, pushImage, randomBlob } from '../helpers/index.js';
import { runFerry } from '../cli/run.js';

const plainUrl = process.env.FERRY_TEST_REGISTRY_URL;
const authUrl = process.env.FERRY_TEST_REGISTRY_AUTH_URL;
const username = process.env.FERRY_TEST_REGISTRY_USERNAME ?? 'ferry';
const password = process.env.FERRY_TEST_REGISTRY_PASSWORD ?? 's3cret';

describe.runIf(!!plainUrl && !!authUrl)('docker-compose.test.yml registries', () => {
  const run = `run-${randomBytes(4).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'ferry-compose-'));
  const plain: RegistryEndpoint = { url: plainUrl! };
  const auth: RegistryEndpoint = { url: authUrl!, username, password };
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function config(pass: string) {
    return {
      registries: { plain: { url: plainUrl! }, auth: { url: authUrl!, username, password: pass } },
      transfer: { concurrency: 4, retries: 1, stateDir: join(dir, 'state') },
      rules: [{ name: 'compose', source: 'plain', destination: 'auth', filters: { repositories: [`${run}/**`] }, destinationNamespace: 'mirror' }],
    };
  }

  it('copies from the plain registry to the htpasswd one (CLI exit 0, then the API finds it present)', async () => {
    const base = randomBlob(50_000);
    const a = await pushImage(plain, `${run}/app`, '1.0', buildImage({ layers: [base, randomBlob(5_000)] }));
    const b = await pushImage(plain, `${run}/tools/cli`, 'v2', buildImage({ layers: [base, randomBlob(6_000)], format: 'docker' }));

    const file = join(dir, 'ferry.yaml');
    writeFileSync(file, stringify(config('${AUTH_PASSWORD}')));
    const res = await runFerry(['sync', '--config', file, '--output', 'json'], { env: { AUTH_PASSWORD: password } });
    expect(res.code, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout).totals.artifacts).toMatchObject({ planned: 2, copied: 2, failed: 0 });
    expect((await getManifest(auth, `mirror/${run}/app`, '1.0'))?.digest).toBe(a.digest);
    expect((await getManifest(auth, `mirror/${run}/tools/cli`, 'v2'))?.digest).toBe(b.digest);

    const ferry = createFerry(config(password), { stateDir: false });
    try {
      const report = await ferry.sync();
      expect(report.totals.artifacts).toMatchObject({ copied: 0, present: 2 });
    } finally {
      await ferry.close();
    }
  });

  it('refuses a wrong password: CLI exit 3, API PreflightError', async () => {
    const file = join(dir, 'wrong.yaml');
    writeFileSync(file, stringify(config('wrong-password')));
    const res = await runFerry(['sync', '--config', file], {});
    expect(res.code).toBe(3);
    const ferry = createFerry(config('wrong-password'), { stateDir: false });
    try {
      await expect(ferry.sync()).rejects.toThrow(PreflightError);
    } finally {
      await ferry.close();
    }
  });
});

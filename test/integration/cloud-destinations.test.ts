// TCR and SWR as destinations, end to end: the cloud APIs are stubs that verify signatures the way
// the clouds do; the registry behind them is a real distribution registry with the login the cloud
// would hand out (TCR temporary instance token, SWR AK/SK login key).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { Engine } from '../../src/engine/engine.js';
import { swrLoginPassword } from '../../src/providers/swr-signer.js';
import { startSwrStub, startTcrStub } from '../helpers/cloud-stubs.js';
import { type TestRegistry, buildImage, getManifest, pushImage, startRegistry } from '../helpers/index.js';

const TCR_KEYS = { secretId: 'AKIDtest', secretKey: 'tcr-secret-key', region: 'ap-guangzhou', instanceId: 'tcr-abcd1234' };
const SWR_KEYS = { accessKey: 'QTWAOYTTINDUT2QVKYUC', secretKey: 'MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc', region: 'eu-de' };
const tcrLogin = { username: '100012345678', password: 'temporary-instance-token' };

let source: TestRegistry;
const image = buildImage({ layers: [3000, 4000] });

beforeAll(async () => {
  source = await startRegistry({ auth: 'none' });
  await pushImage(source, 'library/nginx', '1.27', image);
  await pushImage(source, 'team/a/b/tool', 'v1', image);
});
afterAll(async () => source?.stop());

describe('TCR destination', () => {
  it('logs in with a temporary instance token, creates the namespace privately, copies', async () => {
    const stub = await startTcrStub({ ...TCR_KEYS, fixedCredentials: tcrLogin });
    const tcr = await startRegistry({ auth: 'basic', users: [tcrLogin] });
    const engine = new Engine(
      parseConfig({
        registries: {
          idc: { url: source.url },
          tcr: { url: tcr.url, kind: 'tcr', tcr: { ...TCR_KEYS, apiEndpoint: stub.url } },
        },
        rules: [{ name: 'to-tcr', source: 'idc', destination: 'tcr', destinationNamespace: 'dev-container', flatten: 'all' }],
      }),
      { stateDir: false },
    );
    try {
      const report = await engine.sync();
      expect(report.rules[0]!.problems).toEqual([]);
      expect(report.rules[0]!.artifacts.copied).toBe(2);
      expect(stub.namespaces.get('dev-container')).toBe(false); // created, private
      expect(stub.calls('CreateNamespace')).toHaveLength(1); // once per run, not per artifact
      expect(stub.calls('CreateInstanceToken').length).toBe(1);
      expect((await getManifest(tcr, 'dev-container/nginx', '1.27'))?.digest).toBe(image.digest);
      expect((await getManifest(tcr, 'dev-container/tool', 'v1'))?.digest).toBe(image.digest);
    } finally {
      await engine.close();
      await tcr.stop();
      await stub.close();
    }
  });

  it('rejects namespaces TCR would refuse at plan time', async () => {
    const engine = new Engine(
      parseConfig({
        registries: { idc: { url: source.url }, tcr: { url: 'https://x.tencentcloudcr.com', kind: 'tcr', username: 'u', password: 'p' } },
        rules: [{ name: 'r', source: 'idc', destination: 'tcr', destinationNamespace: 'a' }],
      }),
      { stateDir: false },
    );
    try {
      const plan = await engine.plan(engine.config.rules[0]!);
      expect(plan.items).toEqual([]);
      expect(plan.problems.length).toBe(2);
      expect(plan.problems[0]!.message).toMatch(/2.*30/);
    } finally {
      await engine.close();
    }
  });
});

describe('SWR destination', () => {
  it('logs in with the AK/SK login key, creates the organization through the signed API, copies', async () => {
    const stub = await startSwrStub({ ...SWR_KEYS });
    const swr = await startRegistry({ auth: 'basic', users: [{ username: `eu-de@${SWR_KEYS.accessKey}`, password: swrLoginPassword(SWR_KEYS.accessKey, SWR_KEYS.secretKey) }] });
    const engine = new Engine(
      parseConfig({
        registries: {
          idc: { url: source.url },
          swr: { url: swr.url, kind: 'swr', swr: { ...SWR_KEYS, cloud: 'otc', apiEndpoint: stub.url } },
        },
        rules: [{ name: 'to-swr', source: 'idc', destination: 'swr', destinationNamespace: 'migrated', flatten: 'all' }],
      }),
      { stateDir: false },
    );
    try {
      const report = await engine.sync();
      expect(report.rules[0]!.artifacts.copied).toBe(2);
      expect(stub.namespaces.has('migrated')).toBe(true);
      expect((await getManifest(swr, 'migrated/nginx', '1.27'))?.digest).toBe(image.digest);
    } finally {
      await engine.close();
      await swr.stop();
      await stub.close();
    }
  });

  it('reports names deeper than organization/name at plan time with a hint to flatten', async () => {
    const engine = new Engine(
      parseConfig({
        registries: { idc: { url: source.url }, swr: { url: 'https://swr.eu-de.otc.t-systems.com', kind: 'swr', username: 'u', password: 'p' } },
        rules: [{ name: 'r', source: 'idc', destination: 'swr', destinationNamespace: 'migrated', flatten: 'none' }],
      }),
      { stateDir: false },
    );
    try {
      const plan = await engine.plan(engine.config.rules[0]!);
      expect(plan.problems.map((p) => p.message).join('\n')).toMatch(/flatten: all/);
    } finally {
      await engine.close();
    }
  });
});

// TCR and SWR as destinations, end to end: the cloud APIs are stubs that verify signatures the way
// the clouds do; the registry behind them is a real distribution registry with the login the cloud
// would hand out (TCR temporary instance token, SWR AK/SK login key).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { Engine } from '../../src/engine/engine.js';
import { swrLoginPassword } from '../../src/providers/swr-signer.js';
import { startSwrStub, startTcrStub } from '../helpers/cloud-stubs.js';
import { startHarborStub } from '../helpers/harbor-stub.js';
import { type TestRegistry, buildImage, buildIndex, getManifest, headBlob, pushImage, startProxy, startRegistry } from '../helpers/index.js';

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
          swr: { url: swr.url, kind: 'swr', swr: { ...SWR_KEYS, cloud: 'otc', apiEndpoint: stub.url, iamEndpoint: stub.url } },
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

  it('converts OCI manifests and indexes to Docker schema 2 with swr.convertToDocker, reporting the new digests', async () => {
    const oci = buildImage({ layers: [2500], format: 'oci' });
    const index = buildIndex([buildImage({ layers: [1200], format: 'oci', platform: { os: 'linux', architecture: 'amd64' } }), buildImage({ layers: [1300], format: 'oci', platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } })], 'oci');
    await pushImage(source, 'oci/single', '1', oci);
    await pushImage(source, 'oci/multi', '1', index);
    const swr = await startRegistry({ auth: 'none' });
    const api = await startSwrStub({ ...SWR_KEYS });
    const engine = new Engine(
      parseConfig({
        registries: { idc: { url: source.url }, swr: { url: swr.url, kind: 'swr', username: 'u', password: 'p', swr: { ...SWR_KEYS, apiEndpoint: api.url, iamEndpoint: api.url, convertToDocker: true } } },
        rules: [{ name: 'r', source: 'idc', destination: 'swr', destinationNamespace: 'conv', flatten: 'all', filters: { repositories: ['oci/**'] } }],
      }),
      { stateDir: false },
    );
    try {
      const report = await engine.sync();
      const items = report.rules[0]!.items;
      expect(items.map((i) => i.status)).toEqual(['copied', 'copied']);
      const single = await getManifest(swr, 'conv/single', '1');
      expect(single!.mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
      expect(items.find((i) => i.source.includes('oci/single'))!.destinationDigest).toBe(single!.digest);
      expect(single!.digest).not.toBe(oci.digest);
      expect(await headBlob(swr, 'conv/single', oci.layers[0]!.digest)).toBe(true); // blobs unchanged
      const list = await getManifest(swr, 'conv/multi', '1');
      expect(list!.mediaType).toBe('application/vnd.docker.distribution.manifest.list.v2+json');
      const children = (JSON.parse(list!.bytes.toString()) as { manifests: { digest: string; mediaType: string; platform: { architecture: string } }[] }).manifests;
      expect(children.map((c) => c.platform.architecture)).toEqual(['amd64', 'arm64']);
      for (const c of children) {
        expect(c.mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
        expect((await getManifest(swr, 'conv/multi', c.digest))!.mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
      }
      // A rerun finds the converted manifests in place.
      expect((await engine.sync()).rules[0]!.artifacts.present).toBe(2);
    } finally {
      await engine.close();
      await swr.stop();
      await api.close();
    }
  });

  it('says to turn on swr.convertToDocker when SWR refuses an OCI manifest', async () => {
    const swr = await startRegistry({ auth: 'none' });
    const refusing = await startProxy(swr.url, { statusSequence: { match: /^PUT \/v2\/.+\/manifests\//, statuses: [400, 400, 400] } });
    const api = await startSwrStub({ ...SWR_KEYS });
    const engine = new Engine(
      parseConfig({
        registries: { idc: { url: source.url }, swr: { url: refusing.url, kind: 'swr', username: 'u', password: 'p', swr: { ...SWR_KEYS, apiEndpoint: api.url, iamEndpoint: api.url } } },
        rules: [{ name: 'r', source: 'idc', destination: 'swr', destinationNamespace: 'refused', flatten: 'all', filters: { repositories: ['oci/single'] } }],
      }),
      { stateDir: false },
    );
    try {
      const report = await engine.sync();
      expect(report.rules[0]!.items[0]!.reason).toMatch(/refused an OCI manifest; .*swr\.convertToDocker: true/);
    } finally {
      await engine.close();
      await api.close();
      await refusing.stop();
      await swr.stop();
    }
  });
});

describe('pull-based: cloud registries as sources', () => {
  it('copies from TCR (temporary instance token) into a Harbor project it creates', async () => {
    const tcr = await startRegistry({ auth: 'basic', users: [tcrLogin] });
    // The TCR API lists what the instance's registry holds (DescribeRepositories / DescribeImages).
    const stub = await startTcrStub({ ...TCR_KEYS, fixedCredentials: tcrLogin, inventoryFrom: { url: tcr.url, ...tcrLogin } });
    await pushImage(tcr, 'prod/api', '2.0', image);
    const harborBackend = await startRegistry({ auth: 'none' });
    const harbor = await startHarborStub({ registryUrl: harborBackend.url, users: { admin: 'Harbor12345' } });
    const engine = new Engine(
      parseConfig({
        registries: {
          tcr: { url: tcr.url, kind: 'tcr', tcr: { ...TCR_KEYS, apiEndpoint: stub.url } },
          harbor: { url: harbor.url, kind: 'harbor', username: 'admin', password: 'Harbor12345' },
        },
        rules: [{ name: 'back', source: 'tcr', destination: 'harbor', destinationNamespace: 'from-cloud' }],
      }),
      { stateDir: false },
    );
    try {
      const report = await engine.sync();
      expect(report.rules[0]!.artifacts.copied).toBe(1);
      expect(stub.calls('DescribeImages').length).toBeGreaterThan(0); // listed through the API, digests known
      expect(harbor.projects.get('from-cloud')?.public).toBe(false);
      expect((await getManifest(harborBackend, 'from-cloud/prod/api', '2.0'))?.digest).toBe(image.digest);
    } finally {
      await engine.close();
      await harbor.close();
      await Promise.all([tcr.stop(), harborBackend.stop(), stub.close()]);
    }
  });
});

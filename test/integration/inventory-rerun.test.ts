// #11 item 4, end to end through the engine: a no-op rerun between products with bulk inventories
// (Harbor as the source, TCR and SWR as destinations) compares the digests of their listings and
// sends at most 1 request per 50 tags to each registry. The products are stubs answering in the
// vendors' published shapes, fronting real registries (Harbor's /v2/ proxied to one; TCR's and SWR's
// listings read from the one behind them): the count covers API and registry requests alike.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { Engine } from '../../src/engine/engine.js';
import { swrLoginPassword } from '../../src/providers/swr-signer.js';
import { type SwrStub, type TcrStub, startSwrStub, startTcrStub } from '../helpers/cloud-stubs.js';
import { type HarborStub, startHarborStub } from '../helpers/harbor-stub.js';
import { type TestImage, type TestRegistry, buildImage, headManifest, pushImage, pushManifest, startRegistry } from '../helpers/index.js';

const REPOS = 3;
const IMAGES = 5; // per repository
const TAGS_PER_IMAGE = 30; // 150 tags per repository: two pages of TCR's and SWR's listings
const TAGS = REPOS * IMAGES * TAGS_PER_IMAGE;
const TCR_KEYS = { secretId: 'AKIDrerun', secretKey: 'tcr-rerun-key', region: 'ap-guangzhou', instanceId: 'tcr-rerun001' };
const SWR_KEYS = { accessKey: 'HWRERUNAK00000000001', secretKey: 'hw-rerun-sk', region: 'eu-de' };
const tcrLogin = { username: '100012345678', password: 'temporary-instance-token' };
const swrLogin = { username: `eu-de@${SWR_KEYS.accessKey}`, password: swrLoginPassword(SWR_KEYS.accessKey, SWR_KEYS.secretKey) };

const repoName = (r: number) => `team/app-${r}`;
const tagName = (i: number, t: number) => `v${i}.${t}`;

let harborBackend: TestRegistry;
let tcrBackend: TestRegistry;
let swrBackend: TestRegistry;
let harbor: HarborStub;
let tcr: TcrStub;
let swr: SwrStub;
const images: TestImage[][] = [];

beforeAll(async () => {
  [harborBackend, tcrBackend, swrBackend] = await Promise.all([startRegistry({ auth: 'none' }), startRegistry({ auth: 'basic', users: [tcrLogin] }), startRegistry({ auth: 'basic', users: [swrLogin] })]);
  const artifacts = [];
  for (let r = 0; r < REPOS; r++) {
    images.push([]);
    for (let i = 0; i < IMAGES; i++) {
      const image = buildImage({ layers: [300 + i] });
      images[r]!.push(image);
      await pushImage(harborBackend, repoName(r), tagName(i, 0), image);
      for (let t = 1; t < TAGS_PER_IMAGE; t++) await pushManifest(harborBackend, repoName(r), tagName(i, t), image.manifest, image.mediaType);
      artifacts.push({ repository: repoName(r), digest: image.digest, pushTime: new Date(Date.UTC(2024, 0, 1, 0, i)).toISOString(), tags: Array.from({ length: TAGS_PER_IMAGE }, (_, t) => tagName(i, t)) });
    }
  }
  harbor = await startHarborStub({ registryUrl: harborBackend.url, maxPageSize: 100, artifacts });
  tcr = await startTcrStub({ ...TCR_KEYS, fixedCredentials: tcrLogin, namespaces: ['team'], inventoryFrom: { url: tcrBackend.url, ...tcrLogin } });
  swr = await startSwrStub({ ...SWR_KEYS, namespaces: ['team'], inventoryFrom: { url: swrBackend.url, ...swrLogin } });
}, 120_000);

afterAll(async () => {
  await Promise.all([harbor?.close(), tcr?.close(), swr?.close()]);
  await Promise.all([harborBackend?.stop(), tcrBackend?.stop(), swrBackend?.stop()]);
});

function engine(): Engine {
  return new Engine(
    parseConfig({
      registries: {
        harbor: { url: harbor.url, kind: 'harbor' },
        tcr: { url: tcrBackend.url, kind: 'tcr', tcr: { ...TCR_KEYS, apiEndpoint: tcr.url } },
        swr: { url: swrBackend.url, kind: 'swr', swr: { ...SWR_KEYS, cloud: 'otc', apiEndpoint: swr.url, iamEndpoint: swr.url } },
      },
      rules: [
        { name: 'to-tcr', source: 'harbor', destination: 'tcr' },
        { name: 'to-swr', source: 'harbor', destination: 'swr' },
      ],
    }),
    { stateDir: false },
  );
}

const total = (kinds: Record<string, number> | undefined) => Object.values(kinds ?? {}).reduce((a, b) => a + b, 0);

describe('no-op rerun between bulk-inventory products', () => {
  it(`Harbor -> TCR and SWR: the rerun copies nothing and sends at most ${TAGS} / 50 requests to each registry`, async () => {
    const first = engine();
    try {
      const report = await first.sync();
      for (const r of report.rules) expect(r.artifacts, r.name).toMatchObject({ planned: REPOS * IMAGES, copied: REPOS * IMAGES, failed: 0 });
    } finally {
      await first.close();
    }
    for (const backend of [tcrBackend, swrBackend]) expect((await headManifest(backend, repoName(2), tagName(4, TAGS_PER_IMAGE - 1)))?.digest).toBe(images[2]![4]!.digest);

    // A new process (no caches), as the next scheduled run; one rule at a time, so that each
    // report's per-registry counts are that rule's alone (both read the same Harbor).
    const second = engine();
    const budget = TAGS / 50;
    try {
      for (const [rule, stub] of [['to-tcr', tcr], ['to-swr', swr]] as const) {
        const before = { harbor: harbor.requests.length, destination: stub.requests.length };
        const report = await second.sync({ rules: [rule], skipPreflight: true });
        const r = report.rules[0]!;
        const seen = `${rule}: ${JSON.stringify(r.requests)}`;
        expect(r.artifacts, seen).toMatchObject({ planned: REPOS * IMAGES, copied: 0, present: REPOS * IMAGES, failed: 0 });
        const source = total(r.requests?.[r.source]);
        const destination = total(r.requests?.[r.destination]);
        expect(source, seen).toBeGreaterThan(0);
        expect(source, seen).toBeLessThanOrEqual(budget);
        expect(destination, seen).toBeGreaterThan(0);
        expect(destination, seen).toBeLessThanOrEqual(budget);
        // What the stubs saw (API and proxied registry requests alike) agrees.
        expect(harbor.requests.length - before.harbor, seen).toBeLessThanOrEqual(budget);
        expect(stub.requests.length - before.destination, seen).toBeLessThanOrEqual(budget);
      }
    } finally {
      await second.close();
    }
  }, 400_000);
});

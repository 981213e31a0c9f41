// #11 item 4: bulk tag inventories. A no-op rerun compares the digests of the source's and the
// destination's bulk listings instead of a HEAD per tag; between two products that have them it costs
// at most 1 request per 50 tags on each side. Counted at the stubs, which answer in the vendors'
// published shapes (Harbor API v2.0 swagger, TCR DescribeImages, SWR tag listing).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registrySchema } from '../../src/config/schema.js';
import { createProvider } from '../../src/providers/index.js';
import type { Provider, TagInventoryEntry } from '../../src/providers/types.js';
import { startSwrStub, startTcrStub, type SwrStub, type TcrStub } from '../helpers/cloud-stubs.js';
import { startHarborStub, type HarborStub } from '../helpers/harbor-stub.js';

const REPOS = 8;
const TAGS = 120; // per repository: more than one page everywhere
const transfer = { retries: 0, requestTimeout: 10, concurrency: 4 };
const TC = { secretId: 'AKIDinventory', secretKey: 'tcr-inventory-key', region: 'ap-guangzhou', instanceId: 'tcr-inv00001' };
const HW = { accessKey: 'HWINVENTORYAK0000001', secretKey: 'hw-inventory-sk', region: 'eu-de' };

const repoName = (r: number) => `team/app-${r}`;
const digestOf = (r: number, t: number) => `sha256:${(r * 1000 + t).toString(16).padStart(64, '0')}`;
const timeOf = (t: number) => new Date(Date.UTC(2024, 0, 1) + t * 60_000).toISOString();

async function inventory(provider: Provider, repository: string): Promise<Map<string, TagInventoryEntry>> {
  expect(provider.listTagInventory).toBeTypeOf('function');
  const out = new Map<string, TagInventoryEntry>();
  for await (const e of provider.listTagInventory!(repository)) out.set(e.tag, e);
  return out;
}

/** The rerun's comparison: tags whose digest differs at the destination or that are missing there. */
async function differences(source: Provider, destination: Provider, repository: string): Promise<string[]> {
  const [src, dst] = await Promise.all([inventory(source, repository), inventory(destination, repository)]);
  return [...src.values()].filter((e) => dst.get(e.tag)?.digest !== e.digest).map((e) => e.tag);
}

let harbor: HarborStub;
let tcr: TcrStub;
let swr: SwrStub;
let providers: Record<'harbor' | 'tcr' | 'swr', Provider>;

beforeAll(async () => {
  // Harbor: two tags on every other artifact, so tags and artifacts differ in number.
  const artifacts = [];
  for (let r = 0; r < REPOS; r++) {
    for (let t = 0; t < TAGS; t += 2) {
      artifacts.push({ repository: repoName(r), digest: digestOf(r, t), pushTime: timeOf(t), tags: [`v${t}`, `v${t + 1}`] });
    }
  }
  // The clouds: each tag its own image entry, pointing at the same digests.
  const tagsOf = (r: number) => Array.from({ length: TAGS }, (_, t) => ({ tag: `v${t}`, digest: digestOf(r, t - (t % 2)), updateTime: timeOf(t), updated: timeOf(t) }));
  const byRepo = Object.fromEntries(Array.from({ length: REPOS }, (_, r) => [repoName(r), tagsOf(r)]));
  harbor = await startHarborStub({ maxPageSize: 100, artifacts });
  tcr = await startTcrStub({ ...TC, images: byRepo });
  swr = await startSwrStub({ ...HW, repos: byRepo });
  providers = {
    harbor: createProvider('harbor', registrySchema.parse({ url: harbor.url, kind: 'harbor' }), { transfer }),
    tcr: createProvider('tcr', registrySchema.parse({ url: 'https://inv.tencentcloudcr.com', kind: 'tcr', tcr: { ...TC, apiEndpoint: tcr.url } }), { transfer }),
    swr: createProvider('swr', registrySchema.parse({ url: 'https://swr.eu-de.otc.t-systems.com', kind: 'swr', swr: { ...HW, cloud: 'otc', apiEndpoint: swr.url, iamEndpoint: swr.url } }), { transfer }),
  };
});
afterAll(async () => {
  await Promise.all(Object.values(providers ?? {}).map((p) => p.close()));
  await Promise.all([harbor?.close(), tcr?.close(), swr?.close()]);
});

describe('no-op comparison from bulk inventories', () => {
  const pairs = [
    ['harbor', 'tcr'],
    ['harbor', 'swr'],
    ['tcr', 'harbor'],
    ['swr', 'harbor'],
  ] as const;

  it.each(pairs)('%s -> %s: nothing differs, at most 1 request per 50 tags on each side', async (from, to) => {
    const count = {
      harbor: () => harbor.requests.length,
      tcr: () => tcr.requests.length,
      swr: () => swr.requests.length,
    };
    const before = { from: count[from](), to: count[to]() };
    for (let r = 0; r < REPOS; r++) expect(await differences(providers[from], providers[to], repoName(r))).toEqual([]);
    const tags = REPOS * TAGS;
    const used = { from: count[from]() - before.from, to: count[to]() - before.to };
    expect(used.from).toBeGreaterThan(0);
    expect(used.from).toBeLessThanOrEqual(tags / 50);
    expect(used.to).toBeLessThanOrEqual(tags / 50);
  });

  it('finds a tag moved at the destination and a tag missing there', async () => {
    const moved = tcr.images.get(repoName(0))!;
    tcr.images.set(repoName(0), [{ ...moved[0]!, digest: digestOf(9, 9) }, ...moved.slice(2)]);
    try {
      expect(await differences(providers.harbor, providers.tcr, repoName(0))).toEqual(['v0', 'v1']);
    } finally {
      tcr.images.set(repoName(0), moved);
    }
  });

  it('gives push times and sizes where the product has them; an absent repository is empty', async () => {
    const h = await inventory(providers.harbor, repoName(1));
    expect(h.get('v4')).toMatchObject({ digest: digestOf(1, 4), pushedAt: timeOf(4), mediaType: 'application/vnd.oci.image.manifest.v1+json' });
    expect((await inventory(providers.tcr, repoName(1))).get('v4')).toMatchObject({ digest: digestOf(1, 4), pushedAt: timeOf(4), size: 1234 });
    expect((await inventory(providers.swr, repoName(1))).get('v4')).toMatchObject({ digest: digestOf(1, 4), pushedAt: timeOf(4), size: 1234 });
    for (const p of Object.values(providers)) expect((await inventory(p, 'team/absent')).size).toBe(0);
  });

  it('is absent without API keys (the engine then HEADs per tag)', () => {
    const plainTcr = createProvider('t', registrySchema.parse({ url: 'https://x.tencentcloudcr.com', kind: 'tcr', username: 'u', password: 'p' }), { transfer });
    const plainSwr = createProvider('s', registrySchema.parse({ url: 'https://swr.eu-de.otc.t-systems.com', kind: 'swr', username: 'u', password: 'p' }), { transfer });
    const generic = createProvider('g', registrySchema.parse({ url: 'https://registry.example' }), { transfer });
    expect([plainTcr.listTagInventory, plainSwr.listTagInventory, generic.listTagInventory]).toEqual([undefined, undefined, undefined]);
  });
});

describe('cloud stubs mirroring a real registry (for end-to-end reruns)', () => {
  it('TCR and SWR stubs list what was pushed into the registry behind them', async () => {
    const { startRegistry, pushImage, buildImage } = await import('../helpers/index.js');
    const user = { username: 'mirror', password: 'mirror-pass' };
    const registry = await startRegistry({ auth: 'basic', users: [user] });
    const tcrMirror = await startTcrStub({ ...TC, inventoryFrom: { url: registry.url, ...user } });
    const swrMirror = await startSwrStub({ ...HW, inventoryFrom: { url: registry.url, ...user } });
    const t = createProvider('t', registrySchema.parse({ url: registry.url, kind: 'tcr', tcr: { ...TC, apiEndpoint: tcrMirror.url } }), { transfer });
    const s = createProvider('s', registrySchema.parse({ url: registry.url, kind: 'swr', swr: { ...HW, cloud: 'otc', apiEndpoint: swrMirror.url, iamEndpoint: swrMirror.url } }), { transfer });
    try {
      const image = buildImage({ layers: [100] });
      await pushImage(registry, 'ns/app', '1.0', image);
      await pushImage(registry, 'ns/app', 'latest', image);
      for (const p of [t, s]) {
        const inv = await inventory(p, 'ns/app');
        expect([...inv.keys()].sort()).toEqual(['1.0', 'latest']);
        expect(inv.get('1.0')!.digest).toBe(image.digest);
        // As a source: one artifact per digest, all its tags, a push time (what the plan orders by).
        const listed = [];
        for await (const a of p.listArtifacts()) listed.push(a);
        expect(listed).toHaveLength(1);
        expect(listed[0]).toMatchObject({ repository: 'ns/app', digest: image.digest, tags: ['1.0', 'latest'] });
        expect(listed[0]!.pushedAt).toBeInstanceOf(Date);
        // and the product's size: the plan's bytes for the progress bars, before any manifest is read
        expect(listed[0]!.size).toBeGreaterThan(0);
      }
      // Keys the API refuses for listing: the registry catalog lists instead (tags, no digests).
      const refused = createProvider('r', registrySchema.parse({ url: registry.url, kind: 'tcr', username: user.username, password: user.password, tcr: { ...TC, secretKey: 'wrong', apiEndpoint: tcrMirror.url } }), { transfer });
      const viaCatalog = [];
      for await (const a of refused.listArtifacts()) viaCatalog.push(a);
      await refused.close();
      expect(viaCatalog.map((a) => a.tags[0]).sort()).toEqual(['1.0', 'latest']);
      expect(viaCatalog[0]!.digest).toBeUndefined();
    } finally {
      await Promise.all([t.close(), s.close()]);
      await Promise.all([tcrMirror.close(), swrMirror.close(), registry.stop()]);
    }
  });
});

describe('ferry check', () => {
  it('reports whether the bulk listing works with the configured keys', async () => {
    const { startRegistry } = await import('../helpers/index.js');
    const registry = await startRegistry({ auth: 'none' });
    const make = (name: string, raw: Record<string, unknown>) => createProvider(name, registrySchema.parse({ url: registry.url, ...raw }), { transfer });
    const list = [
      make('t', { kind: 'tcr', tcr: { ...TC, apiEndpoint: tcr.url } }),
      make('s', { kind: 'swr', swr: { ...HW, cloud: 'otc', apiEndpoint: swr.url, iamEndpoint: swr.url } }),
      make('w', { kind: 'tcr', username: 'u', password: 'p', tcr: { ...TC, secretKey: 'wrong', apiEndpoint: tcr.url } }),
      make('n', { kind: 'tcr', username: 'u', password: 'p' }),
    ];
    try {
      const [t, s, w, n] = await Promise.all(list.map((p) => p.check()));
      expect(t!.features.tagInventory).toBe(true);
      expect(s!.features.tagInventory).toBe(true);
      expect(w!.features.tagInventory).toMatch(/AuthFailure/);
      expect(n!.features.tagInventory).toMatch(/no API keys/);
    } finally {
      await Promise.all(list.map((p) => p.close()));
      await registry.stop();
    }
  });
});

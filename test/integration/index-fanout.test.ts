// Index fan-out against real registries: an index that lists one child many times copies that child
// once (one source fetch, a bounded number in flight), indexes nested past the depth budget fail
// their own artifact only, and the walk's budget is counted in distinct manifests.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { Descriptor } from '../../src/registry/media-types.js';
import { IndexTooLargeError, IndexWalk, MAX_INDEX_CHILDREN, MAX_INDEX_DEPTH } from '../../src/transfer/artifact-copier.js';
import { MT, type TestProxy, type TestRegistry, buildImage, buildIndex, buildMultiArch, getManifest, pushImage, pushManifest, sha256, startProxy, startRegistry } from '../helpers/index.js';
import { transferConfig } from './transfer-fixtures.js';

let source: TestRegistry;
let destination: TestRegistry;
let src: TestProxy;
const REPEATS = 5000;
let childDigest = '';
let wideDigest = '';

beforeAll(async () => {
  [source, destination] = await Promise.all([startRegistry(), startRegistry()]);
  src = await startProxy(source.url);
  const child = buildIndex([buildImage({ layers: [300], format: 'oci' })], 'oci');
  await pushImage(source, 'fan/app', undefined, child);
  childDigest = child.digest;
  // One child index listed 5000 times: every entry is the same descriptor.
  const wide = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.ociIndex, manifests: Array(REPEATS).fill(child.descriptor) }));
  wideDigest = sha256(wide);
  await pushManifest(source, 'fan/app', 'wide', wide, MT.ociIndex);
  // Indexes nested one deeper than the budget.
  let deep = buildIndex([buildImage({ layers: [200], format: 'oci' })], 'oci');
  for (let i = 0; i < MAX_INDEX_DEPTH; i++) deep = buildIndex([deep], 'oci');
  await pushImage(source, 'fan/app', 'deep', deep);
  await pushImage(source, 'fan/app', 'ok', buildMultiArch('oci'));
}, 60_000);

afterAll(async () => {
  await src?.stop();
  await Promise.all([source?.stop(), destination?.stop()]);
});

describe('index fan-out', () => {
  it('copies a child listed many times once, fails an index nested too deep on its own, copies the rest', async () => {
    const engine = new Engine(transferConfig({ source: { url: src.url }, destination: { url: destination.url }, rule: { filters: { repositories: ['fan/**'] } } }), { stateDir: false });
    try {
      const report = await engine.sync();
      const rule = report.rules[0]!;
      expect(rule.artifacts.copied).toBe(2);
      expect(rule.artifacts.failed).toBe(1);
      const failed = rule.items.find((i) => i.status === 'failed');
      expect(failed?.tags).toEqual(['deep']);
      expect(failed?.reason).toMatch(new RegExp(`nested more than ${MAX_INDEX_DEPTH} deep`));
    } finally {
      await engine.close();
    }
    expect((await getManifest(destination, 'fan/app', 'wide'))?.digest).toBe(wideDigest);
    expect((await getManifest(destination, 'fan/app', 'ok'))?.digest).toBeDefined();
    // The repeated child was fetched from the source once, not once per entry.
    expect(src.count(new RegExp(`^GET /v2/fan/app/manifests/${childDigest}$`))).toBe(1);
  });

  it('counts the budget in distinct manifests across the whole tree', () => {
    const d = (i: number): Descriptor => ({ mediaType: MT.ociManifest, digest: `sha256:${i.toString(16).padStart(64, '0')}`, size: 1 });
    const walk = new IndexWalk();
    expect(walk.enter([d(1), d(1), d(2)], 'x')).toHaveLength(2);
    expect(walk.enter([d(2), d(3)], 'x')).toEqual([d(3)]);
    walk.leave();
    walk.leave();
    const many = Array.from({ length: MAX_INDEX_CHILDREN + 1 }, (_, i) => d(i + 10));
    expect(() => new IndexWalk().enter(many, 'src/big')).toThrow(IndexTooLargeError);
    expect(() => new IndexWalk().enter(many, 'src/big')).toThrow(/more than 1024 distinct manifests/);
  });
});

// Content edge cases against real registries: schema 1 manifests fail per artifact with a clear
// message while the rest of the rule is copied.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { Engine } from '../../src/engine/engine.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestRegistry, buildImage, buildSchema1, deleteManifest, getManifest, headBlob, pushImage, randomBlob, rawClient, startProxy, startRegistry } from '../helpers/index.js';

let source: TestRegistry;
let destination: TestRegistry;

beforeAll(async () => {
  [source, destination] = await Promise.all([startRegistry({ auth: 'none', schema1: true }), startRegistry({ auth: 'none' })]);
  await pushImage(source, 'legacy/old', 'v1', buildSchema1('legacy/old', 'v1'));
  await pushImage(source, 'legacy/new', 'v2', buildImage({ layers: [2000] }));
});
afterAll(async () => Promise.all([source?.stop(), destination?.stop()]));

describe('content', () => {
  it('fails a schema 1 manifest with a clear reason and copies the others', async () => {
    const engine = new Engine(parseConfig({ registries: { s: { url: source.url }, d: { url: destination.url } }, rules: [{ name: 'r', source: 's', destination: 'd' }] }), { stateDir: false });
    try {
      const report = await engine.sync();
      const items = report.rules[0]!.items;
      const old = items.find((i) => i.source.includes('legacy/old'))!;
      expect(old.status).toBe('failed');
      expect(old.reason).toMatch(/schema 1/);
      expect(items.find((i) => i.source.includes('legacy/new'))!.status).toBe('copied');
      expect(await getManifest(destination, 'legacy/new', 'v2')).not.toBeNull();
      expect(report.status).toBe('partial');
    } finally {
      await engine.close();
    }
  });

  it('links a blob into a repository once when several of its tags share it', async () => {
    const shared = randomBlob(50_000);
    const images = [1, 2, 3, 4].map((n) => buildImage({ layers: [shared, randomBlob(1000 + n)] }));
    await pushImage(source, 'race/first', '1', images[0]!);
    for (const [i, img] of images.slice(1).entries()) await pushImage(source, 'race/second', String(i), img);
    const proxy = await startProxy(destination.url, {});
    const engine = new Engine(
      parseConfig({
        registries: { s: { url: source.url }, d: { url: proxy.url } },
        transfer: { concurrency: 8 },
        rules: [{ name: 'r', source: 's', destination: 'd', destinationNamespace: 'race', filters: { repositories: ['race/**'] } }],
      }),
      { stateDir: false },
    );
    try {
      const report = await engine.sync();
      expect(report.rules[0]!.items.filter((i) => i.status === 'failed')).toEqual([]);
      const sharedDigest = images[0]!.layers[0]!.digest;
      const intoSecond = proxy.requests.filter((r) => r.path.startsWith('/v2/race/race/second/blobs/') && r.path.includes(encodeURIComponent(sharedDigest)));
      // The shared layer is put into race/second once (an upload's PUT or a mount's POST), however
      // many of its tags use it.
      expect(intoSecond.filter((r) => r.method === 'POST' || r.method === 'PUT')).toHaveLength(1);
    } finally {
      await engine.close();
      await proxy.stop();
    }
  });

  it('copies again a blob the journal recorded but the destination lost (deleted or garbage-collected)', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'ferry-stale-'));
    const img = buildImage({ layers: [randomBlob(3000), randomBlob(2000)] });
    await pushImage(source, 'stale/app', '1', img);
    const cfg = parseConfig({ registries: { s: { url: source.url }, d: { url: destination.url } }, rules: [{ name: 'r', source: 's', destination: 'd', filters: { repositories: ['stale/**'] } }] });
    const first = new Engine(cfg, { stateDir });
    await first.sync().finally(() => first.close());
    // Someone deletes the image and one of its layers at the destination; the journal still lists them.
    await deleteManifest(destination, 'stale/app', img.digest);
    const lost = img.layers[0]!.digest;
    expect((await rawClient(destination).request('DELETE', `/v2/stale/app/blobs/${lost}`)).status).toBe(202);
    expect(await headBlob(destination, 'stale/app', lost)).toBe(false);

    const again = new Engine(cfg, { stateDir });
    try {
      const report = await again.sync();
      expect(report.rules[0]!.items.map((i) => [i.status, i.reason])).toEqual([['copied', undefined]]);
      expect(await headBlob(destination, 'stale/app', lost)).toBe(true);
      expect((await getManifest(destination, 'stale/app', '1'))?.digest).toBe(img.digest);
    } finally {
      await again.close();
    }
  });
});

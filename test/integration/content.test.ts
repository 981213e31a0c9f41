// Content edge cases against real registries: schema 1 manifests fail per artifact with a clear
// message while the rest of the rule is copied.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { Engine } from '../../src/engine/engine.js';
import { type TestRegistry, buildImage, buildSchema1, getManifest, pushImage, randomBlob, startProxy, startRegistry } from '../helpers/index.js';

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
});

// Content edge cases against real registries: schema 1 manifests fail per artifact with a clear
// message while the rest of the rule is copied.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { Engine } from '../../src/engine/engine.js';
import { type TestRegistry, buildImage, buildSchema1, getManifest, pushImage, startRegistry } from '../helpers/index.js';

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
});

// #15 push order: a repository's artifacts reach the destination oldest first by the source's push
// time (Harbor lists newest first), so "keep the N most recently pushed" retention picks the same
// artifacts on both sides. The order is observed as the manifest PUTs the destination receives.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { Engine } from '../../src/engine/engine.js';
import { type HarborStub, startHarborStub } from '../helpers/harbor-stub.js';
import { type TestRegistry, buildImage, pushImage, randomBlob, startRegistry } from '../helpers/index.js';

const days = ['2024-03-01', '2024-01-01', '2024-04-01', '2024-02-01'];
const images = days.map(() => buildImage({ layers: [randomBlob(500)] }));
let sourceRegistry: TestRegistry;
let destinationRegistry: TestRegistry;
let source: HarborStub;
let destination: HarborStub;

beforeAll(async () => {
  [sourceRegistry, destinationRegistry] = await Promise.all([startRegistry({ auth: 'none' }), startRegistry({ auth: 'none' })]);
  for (const [i, day] of days.entries()) await pushImage(sourceRegistry, 'library/app', `t-${day}`, images[i]!);
  source = await startHarborStub({
    registryUrl: sourceRegistry.url,
    artifacts: days.map((day, i) => ({ repository: 'library/app', digest: images[i]!.digest, tags: [`t-${day}`], pushTime: `${day}T00:00:00Z` })),
  });
  destination = await startHarborStub({ registryUrl: destinationRegistry.url });
});
afterAll(async () => {
  await Promise.all([source?.close(), destination?.close()]);
  await Promise.all([sourceRegistry?.stop(), destinationRegistry?.stop()]);
});

describe('push order', () => {
  it('pushes a repository oldest first by Harbor push_time (one artifact at a time)', async () => {
    const engine = new Engine(
      parseConfig({
        registries: { idc: { url: source.url, kind: 'harbor' }, dr: { url: destination.url, kind: 'harbor' } },
        transfer: { artifactConcurrency: 1 },
        rules: [{ name: 'order', source: 'idc', destination: 'dr' }],
      }),
      { stateDir: false },
    );
    try {
      const report = await engine.sync();
      expect(report.rules[0]!.artifacts.copied).toBe(4);
    } finally {
      await engine.close();
    }
    const pushed = destination.requests
      .filter((r) => r.method === 'PUT' && /^\/v2\/library\/app\/manifests\/t-/.test(r.path))
      .map((r) => decodeURIComponent(r.path.split('/manifests/')[1]!));
    expect(pushed).toEqual(['t-2024-01-01', 't-2024-02-01', 't-2024-03-01', 't-2024-04-01']);
  });
});

// #15 push order: a repository's artifacts reach the destination oldest first by the source's push
// time (Harbor lists newest first), so "keep the N most recently pushed" retention picks the same
// artifacts on both sides. The order is observed as the manifest PUTs the destination receives, also
// with several artifacts copied at once (transfer.artifactConcurrency 4), where a small image planned
// later would otherwise push its tag before a big one planned earlier (engine/push-order.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { Engine } from '../../src/engine/engine.js';
import { type HarborStub, startHarborStub } from '../helpers/harbor-stub.js';
import { type TestRegistry, buildImage, pushImage, randomBlob, startRegistry } from '../helpers/index.js';

const days = ['2024-03-01', '2024-01-01', '2024-04-01', '2024-02-01'];
const images = days.map(() => buildImage({ layers: [randomBlob(500)] }));
// Oldest first by push time: a big image (throttled by the rule's bandwidth), then small ones.
const mixedDays = ['2024-05-04', '2024-05-01', '2024-05-03', '2024-05-02', '2024-05-05'];
const mixedSizes = [400, 3 * 1024 * 1024, 300, 1024 * 1024, 200];
const mixed = mixedSizes.map((size) => buildImage({ layers: [randomBlob(size)] }));
let sourceRegistry: TestRegistry;
let destinationRegistry: TestRegistry;
let source: HarborStub;
let destination: HarborStub;

beforeAll(async () => {
  [sourceRegistry, destinationRegistry] = await Promise.all([startRegistry({ auth: 'none' }), startRegistry({ auth: 'none' })]);
  for (const [i, day] of days.entries()) await pushImage(sourceRegistry, 'library/app', `t-${day}`, images[i]!);
  for (const [i, day] of mixedDays.entries()) await pushImage(sourceRegistry, 'library/mixed', `m-${day}`, mixed[i]!);
  source = await startHarborStub({
    registryUrl: sourceRegistry.url,
    artifacts: [
      ...days.map((day, i) => ({ repository: 'library/app', digest: images[i]!.digest, tags: [`t-${day}`], pushTime: `${day}T00:00:00Z` })),
      ...mixedDays.map((day, i) => ({ repository: 'library/mixed', digest: mixed[i]!.digest, tags: [`m-${day}`], pushTime: `${day}T00:00:00Z`, size: mixedSizes[i]! + 1000 })),
    ],
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
        rules: [{ name: 'order', source: 'idc', destination: 'dr', filters: { repositories: ['library/app'] } }],
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

  it('pushes the tags of a repository in planned order with artifactConcurrency 4, blobs in parallel; plans bytes from the listing', async () => {
    const engine = new Engine(
      parseConfig({
        registries: { idc: { url: source.url, kind: 'harbor' }, dr: { url: destination.url, kind: 'harbor' } },
        transfer: { artifactConcurrency: 4 },
        rules: [{ name: 'mixed', source: 'idc', destination: 'dr', bandwidth: '4MiB/s', filters: { repositories: ['library/mixed'] } }],
      }),
      { stateDir: false },
    );
    const events: string[] = [];
    let planned: [number, number] | undefined;
    let firstBytesAt: number | undefined;
    let sent = 0;
    let skipped = 0;
    engine.events.on('plannedBytes', (_rule, bytes, artifacts) => ((planned = [bytes, artifacts]), events.push(`plannedBytes ${bytes}`)));
    engine.events.on('bytes', (n) => ((sent += n), (firstBytesAt ??= events.length)));
    engine.events.on('bytesSkipped', (n) => (skipped += n));
    const uploads: string[] = [];
    engine.events.on('blobEnd', (digest) => uploads.push(digest));
    try {
      const report = await engine.sync();
      expect(report.rules[0]!.artifacts.copied).toBe(5);
      expect(report.rules[0]!.bytesPlanned).toBe(mixedSizes.reduce((n, s) => n + s + 1000, 0));
    } finally {
      await engine.close();
    }
    // Bytes planned from Harbor's sizes, known before the first byte was sent; all done at the end.
    expect(planned).toEqual([mixedSizes.reduce((n, s) => n + s + 1000, 0), 5]);
    expect(firstBytesAt).toBeGreaterThan(0);
    expect(sent + skipped).toBe(planned![0]);
    // The small images' blobs finished before the big layer (copied in parallel) ...
    const big = mixed[1]!.layers[0]!.digest;
    expect(uploads.indexOf(big)).toBeGreaterThan(uploads.indexOf(mixed[2]!.layers[0]!.digest));
    // ... but their tags were pushed after it: the destination received the planned order.
    const pushed = destination.requests
      .filter((r) => r.method === 'PUT' && /^\/v2\/library\/mixed\/manifests\/m-/.test(r.path))
      .map((r) => decodeURIComponent(r.path.split('/manifests/')[1]!));
    expect(pushed).toEqual(['m-2024-05-01', 'm-2024-05-02', 'm-2024-05-03', 'm-2024-05-04', 'm-2024-05-05']);
  });
});

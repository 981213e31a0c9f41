// Bytes planned and done per artifact (issue 15): the listing's size or each blob once per artifact,
// skipped blobs done without a byte sent, and an artifact that ends done with all it planned.
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { ArtifactBytes } from '../../src/transfer/byte-plan.js';
import { RuleStats, type TransferEvents } from '../../src/transfer/stats.js';

function rule() {
  const events = new EventEmitter<TransferEvents>();
  const planned: [number, number][] = [];
  let skipped = 0;
  events.on('plannedBytes', (_rule, bytes, artifacts) => planned.push([bytes, artifacts]));
  events.on('bytesSkipped', (n) => (skipped += n));
  const stats = new RuleStats('r', events);
  return { stats, planned, done: () => stats.bytes + skipped };
}

const blob = (d: string, size: number) => ({ digest: `sha256:${d.repeat(64)}`, size });

describe('ArtifactBytes', () => {
  it('plans each blob of an artifact once as its manifests are read (an index: every child)', () => {
    const { stats, planned } = rule();
    const a = new ArtifactBytes(stats);
    a.manifestRead([blob('a', 10), blob('b', 100)]);
    // the second child of an index shares the config and one layer: counted once
    a.manifestRead([blob('a', 10), blob('c', 50)]);
    // a manifest pushed again after MANIFEST_BLOB_UNKNOWN reads the same blobs: nothing new
    a.manifestRead([blob('b', 100)]);
    expect(planned).toEqual([
      [110, 1],
      [160, 1],
    ]);
    // A second artifact with the same blob plans it again (each artifact moves its own).
    new ArtifactBytes(stats).manifestRead([blob('a', 10)]);
    expect(planned.at(-1)).toEqual([170, 2]);
  });

  it('counts sent and skipped blobs as done, and the rest of the plan when the artifact ends', () => {
    const { stats, done } = rule();
    const a = new ArtifactBytes(stats);
    a.manifestRead([blob('a', 10), blob('b', 100), blob('c', 50)]);
    stats.addBytes(100, blob('b', 0).digest); // b uploaded
    stats.addBlob('uploaded', 100);
    a.blobDone(blob('b', 100));
    stats.addBlob('skipped', 10); // a at the destination already
    a.blobDone(blob('a', 10));
    expect(done()).toBe(110);
    // c failed: the artifact ends failed, its remaining 50 bytes are done (never to be sent)
    a.end();
    expect(done()).toBe(160);
    expect(stats.bytesPlanned).toBe(160);
    a.end(); // once only
    expect(done()).toBe(160);
  });

  it("takes the listing's size (already planned by the engine) and ignores the manifests' blobs", () => {
    const { stats, planned, done } = rule();
    stats.planBytes(1000, 1); // the engine, when the repository is planned
    const a = new ArtifactBytes(stats, 1000);
    a.manifestRead([blob('a', 10), blob('b', 900)]);
    expect(planned).toEqual([[1000, 1]]);
    stats.addBlob('mounted', 900);
    a.blobDone(blob('b', 900));
    stats.addBytes(10);
    stats.addBlob('uploaded', 10);
    a.blobDone(blob('a', 10));
    // the listing's size counts the manifests too: the difference is done when the artifact ends
    a.end();
    expect(done()).toBe(1000);
    expect(planned).toEqual([[1000, 1]]);
  });

  it('an artifact that ends before any manifest is read (present by the inventory) counts as sized with nothing', () => {
    const { stats, planned, done } = rule();
    new ArtifactBytes(stats).end();
    expect(planned).toEqual([[0, 1]]);
    expect(done()).toBe(0);
  });
});

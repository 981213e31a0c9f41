// The blob queue's deduplication: one copy per digest per run, one link per repository.
import { describe, expect, it } from 'vitest';
import type { RegistryClient } from '../../src/registry/client.js';
import { BlobCopier, type BlobJob } from '../../src/transfer/blob-copier.js';
import { openState } from '../../src/state/index.js';
import { RuleStats } from '../../src/transfer/stats.js';
import { TokenBucket } from '../../src/transfer/throttle.js';

function copier(): { copier: BlobCopier; calls: string[] } {
  const c = new BlobCopier({ concurrency: 8, retries: 0, state: openState(), journalMaxAgeMs: 0, processBucket: new TokenBucket(0) });
  const calls: string[] = [];
  // Stand in for the network part: record which repository each real copy/mount targets.
  (c as unknown as { process: (job: BlobJob) => Promise<string> }).process = async (job: BlobJob) => {
    calls.push(job.destinationRepository);
    await new Promise((r) => setTimeout(r, 20));
    return calls.length === 1 ? 'uploaded' : 'mounted';
  };
  return { copier: c, calls };
}

const job = (repo: string, stats: RuleStats): BlobJob => ({
  source: {} as RegistryClient,
  sourceRepository: 'src',
  destination: {} as RegistryClient,
  destinationKey: 'dst@host',
  destinationRepository: repo,
  descriptor: { digest: 'sha256:aa', size: 10, mediaType: 'application/octet-stream' },
  stats,
});

describe('BlobCopier deduplication', () => {
  it('copies a digest once, mounts it once per other repository, and skips repeats in one repository', async () => {
    const { copier: c, calls } = copier();
    const stats = new RuleStats('r');
    const outcomes = await Promise.all([job('a', stats), job('b', stats), job('b', stats), job('b', stats), job('a', stats)].map((j) => c.copy(j)));
    expect(calls).toEqual(['a', 'b']);
    expect(outcomes).toEqual(['uploaded', 'mounted', 'skipped', 'skipped', 'skipped']);
    expect(stats.blobs).toEqual({ uploaded: 1, mounted: 1, skipped: 3 });
  });
});

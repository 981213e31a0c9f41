// The detailed plan of a dry run: for every planned copy, what a sync would do (copy, present,
// override, skip) and how many blobs / bytes it would have to move. Reads only: manifests from the
// source, HEADs at the destination.
import PQueue from 'p-queue';
import type { WorkItem } from '../plan/types.js';
import type { RegistryClient } from '../registry/client.js';
import { type Descriptor, parseManifest } from '../registry/media-types.js';
import { type PlannedCopy, plannedCopy } from './report.js';

export interface PlanInspection {
  copies: PlannedCopy[];
  /** Distinct blobs missing at the destination repositories, and their bytes (an upper bound: some may be mounted). */
  blobs: number;
  bytes: number;
}

export async function inspectPlan(
  items: WorkItem[],
  source: RegistryClient,
  destination: RegistryClient,
  override: boolean,
  concurrency = 8,
): Promise<PlanInspection> {
  const queue = new PQueue({ concurrency });
  const missing = new Map<string, number>(); // digest → size
  const copies = await Promise.all(
    items.map((item) =>
      queue.add(async (): Promise<PlannedCopy> => {
        const copy = plannedCopy(item);
        try {
          if (item.chartMuseum) {
            // ChartMuseum charts are converted at copy time (no manifest at the source to compare): a
            // version already tagged at the destination counts as present (a real run compares digests).
            const tagged = await Promise.all(item.tags.map((t) => destination.headManifest(item.destinationRepository, t, true)));
            return { ...copy, action: tagged.every(Boolean) ? 'present' : 'copy' };
          }
          const manifest = await source.getManifest(item.sourceRepository, item.sourceReference);
          const refs = item.tags.length ? item.tags : [manifest.digest];
          const existing = await Promise.all(refs.map((ref) => destination.headManifest(item.destinationRepository, ref, true)));
          const differing = existing.filter((e) => e && e.digest !== manifest.digest).length;
          const absent = existing.filter((e) => !e).length;
          if (absent === 0 && differing === 0) return { ...copy, action: 'present', blobs: 0, bytes: 0 };
          if (absent === 0 && !override) return { ...copy, action: 'skip', blobs: 0, bytes: 0 };
          const blobs = await blobsOf(source, item.sourceRepository, manifest.bytes, manifest.mediaType);
          let count = 0;
          let bytes = 0;
          for (const b of blobs) {
            if (await destination.headBlob(item.destinationRepository, b.digest)) continue;
            count++;
            bytes += b.size;
            missing.set(b.digest, b.size);
          }
          return { ...copy, action: differing && override ? 'override' : 'copy', blobs: count, bytes };
        } catch (err) {
          return { ...copy, action: 'error', error: (err as Error).message };
        }
      }) as Promise<PlannedCopy>,
    ),
  );
  return { copies, blobs: missing.size, bytes: [...missing.values()].reduce((a, b) => a + b, 0) };
}

/** Every blob of a manifest tree (children of an index fetched by digest). */
async function blobsOf(client: RegistryClient, repository: string, bytes: Buffer, mediaType: string): Promise<Descriptor[]> {
  const parsed = parseManifest(bytes, mediaType);
  if (parsed.kind === 'manifest') return [parsed.config, ...parsed.layers];
  const children = await Promise.all(
    parsed.manifests.map(async (d) => {
      const child = await client.getManifest(repository, d.digest);
      return blobsOf(client, repository, child.bytes, child.mediaType || d.mediaType);
    }),
  );
  const seen = new Set<string>();
  return children.flat().filter((d) => (seen.has(d.digest) ? false : (seen.add(d.digest), true)));
}

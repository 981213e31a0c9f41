// The detailed plan of a dry run: for every planned copy, what a sync would do (copy, present,
// override, skip) and how many blobs / bytes it would have to move. Reads only: manifests from the
// source, HEADs at the destination. Streams: bounded whatever the size of the plan.
import PQueue from 'p-queue';
import type { WorkItem } from '../plan/types.js';
import type { RegistryClient } from '../registry/client.js';
import { type Descriptor, parseManifest } from '../registry/media-types.js';
import { type DestinationTags, destinationManifest } from '../transfer/artifact-copier.js';
import { type PlannedCopy, plannedCopy } from './report.js';

export interface PlanInspection {
  /** The planned copies, the first PLAN_ENTRIES_KEPT of them; `omitted` counts the rest. */
  copies: PlannedCopy[];
  omitted: number;
  /** Blobs missing at the destination repositories, and their bytes (an upper bound: some may be mounted). */
  blobs: number;
  bytes: number;
}

/** How many planned copies a dry-run report lists (the totals count them all). */
export const PLAN_ENTRIES_KEPT = 1000;
/** Digests remembered to count a blob missing in several repositories once (beyond: counted again). */
const DISTINCT_BLOBS_REMEMBERED = 100_000;

/**
 * A digest's key in that set: 52 bits of its hash as a number (a 16-byte heap number instead of a
 * 71-character string; 100k of them collide with a probability of about 1e-6, which would count one
 * blob too few in an estimate).
 */
function digestKey(digest: string): number | string {
  const hex = digest.slice(digest.indexOf(':') + 1, digest.indexOf(':') + 14);
  return /^[0-9a-f]{13}$/.test(hex) ? Number.parseInt(hex, 16) : digest;
}

/**
 * Inspects planned copies as the plan streams in (`add` per repository, `done` at the end), with at
 * most `concurrency` inspections at once and bounded memory: a capped list, totals, and a bounded
 * set of digests for the distinct-blob count.
 */
export class PlanInspector {
  private readonly queue: PQueue;
  private readonly copies: PlannedCopy[] = [];
  private omitted = 0;
  private readonly missing = new Set<number | string>();
  private blobs = 0;
  private bytes = 0;

  constructor(
    private readonly source: RegistryClient,
    private readonly destination: RegistryClient,
    private readonly override: boolean,
    concurrency = 8,
    private readonly cap = PLAN_ENTRIES_KEPT,
  ) {
    this.queue = new PQueue({ concurrency });
  }

  /**
   * Queues the inspection of `items`; resolves once the queue has room again (back-pressure).
   * `known`: what their destination repository holds (its tag list / inventory, learnt once per
   * repository), so that a tag it does not list needs no HEAD and an empty repository no blob HEADs,
   * as a sync does (artifact-copier.ts).
   */
  async add(items: WorkItem[], known?: Promise<DestinationTags | undefined>): Promise<void> {
    for (const item of items) {
      void this.queue.add(async () => this.keep(await this.inspect(item, known)));
      if (this.queue.size > this.queue.concurrency * 2) await this.queue.onSizeLessThan(this.queue.concurrency);
    }
  }

  /** Adds an entry that needs no inspection (deleteRemote deletions). */
  note(copy: PlannedCopy): void {
    this.keep(copy);
  }

  async done(): Promise<PlanInspection> {
    await this.queue.onIdle();
    return { copies: this.copies, omitted: this.omitted, blobs: this.blobs, bytes: this.bytes };
  }

  private keep(copy: PlannedCopy): void {
    if (this.copies.length < this.cap) this.copies.push(copy);
    else this.omitted++;
  }

  private countMissing(digest: string, size: number): void {
    const key = digestKey(digest);
    if (this.missing.has(key)) return;
    if (this.missing.size >= DISTINCT_BLOBS_REMEMBERED) this.missing.delete(this.missing.values().next().value!);
    this.missing.add(key);
    this.blobs++;
    this.bytes += size;
  }


  private async inspect(item: WorkItem, knownP: Promise<DestinationTags | undefined> | undefined): Promise<PlannedCopy> {
    const { source, destination, override } = this;
    const copy = plannedCopy(item);
    try {
      const known = await knownP?.catch(() => undefined);
      if (item.chartMuseum) {
        // ChartMuseum charts are converted at copy time (no manifest at the source to compare): a
        // version already tagged at the destination counts as present (a real run compares digests).
        const tagged = await Promise.all(item.tags.map((t) => destination.headManifest(item.destinationRepository, t, true)));
        return { ...copy, action: tagged.every(Boolean) ? 'present' : 'copy' };
      }
      const manifest = await source.getManifest(item.sourceRepository, item.sourceReference);
      const refs = item.tags.length ? item.tags : [manifest.digest];
      const existing = await Promise.all(refs.map((ref) => destinationManifest(destination, item.destinationRepository, known, ref)));
      const differing = existing.filter((e) => e && e.digest !== manifest.digest).length;
      const absent = existing.filter((e) => !e).length;
      if (absent === 0 && differing === 0) return { ...copy, action: 'present', blobs: 0, bytes: 0 };
      if (absent === 0 && !override) return { ...copy, action: 'skip', blobs: 0, bytes: 0 };
      const blobs = await blobsOf(source, item.sourceRepository, manifest.bytes, manifest.mediaType);
      // A repository that lists no tag holds none of them either (a sync uploads them without HEADs).
      const empty = !!known && !known.inventory?.size && (await known.tags())?.size === 0;
      let count = 0;
      let bytes = 0;
      for (const b of blobs) {
        if (!empty && (await destination.headBlob(item.destinationRepository, b.digest))) continue;
        count++;
        bytes += b.size;
        this.countMissing(b.digest, b.size);
      }
      return { ...copy, action: differing && override ? 'override' : 'copy', blobs: count, bytes };
    } catch (err) {
      return { ...copy, action: 'error', error: (err as Error).message };
    }
  }
}

/** The whole inspection of a list of items at once (small plans, tests). */
export async function inspectPlan(items: WorkItem[], source: RegistryClient, destination: RegistryClient, override: boolean, concurrency = 8): Promise<PlanInspection> {
  const inspector = new PlanInspector(source, destination, override, concurrency);
  await inspector.add(items);
  return inspector.done();
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

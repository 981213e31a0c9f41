// One artifact's share of its rule's bytes planned and done (the progress bars' bytes; issue 15).
//
// Planned: the listing's artifact size when the product gives one (Harbor's `size`, counted by the
// engine when the repository is planned), else the blobs of each manifest of the artifact as the
// copier reads it (an index's children, referrers), each distinct blob once per artifact. No request
// is made for it: only what the copy reads anyway.
//
// Done: bytes sent (the `bytes` events) plus what needs no sending: blobs the destination has (the
// rule's stats count skipped and mounted blobs themselves), and, when the artifact ends, whatever it
// planned beyond the blobs it finished (present at the destination, failed, or a listed size above
// the blobs' sum), so that a finished rule has done exactly what it planned.
import type { Descriptor } from '../registry/media-types.js';
import type { RuleStats } from './stats.js';

export class ArtifactBytes {
  private readonly planned = new Set<string>();
  private readonly finished = new Set<string>();
  private plannedBytes = 0;
  private finishedBytes = 0;
  private sized: boolean;
  private ended = false;

  /**
   * `listedSize`: the size the listing gave, already counted in the rule's plan by the engine (the
   * manifests then add nothing).
   */
  constructor(
    private readonly stats: Pick<RuleStats, 'planBytes' | 'skipBytes'>,
    private readonly listedSize?: number | undefined,
  ) {
    this.sized = listedSize !== undefined;
    if (listedSize !== undefined) this.plannedBytes = Math.max(0, listedSize);
  }

  /** The blobs of a manifest just read: planned unless the listing sized the artifact or they were counted already. */
  manifestRead(blobs: readonly Pick<Descriptor, 'digest' | 'size'>[]): void {
    if (this.listedSize !== undefined || this.ended) return;
    let added = 0;
    for (const b of blobs) {
      if (this.planned.has(b.digest)) continue;
      this.planned.add(b.digest);
      added += Math.max(0, b.size);
    }
    this.plannedBytes += added;
    this.stats.planBytes(added, this.sized ? 0 : 1);
    this.sized = true;
  }

  /** A blob of the artifact finished copying (uploaded, mounted or skipped): its bytes are done. */
  blobDone(blob: Pick<Descriptor, 'digest' | 'size'>): void {
    if (this.finished.has(blob.digest)) return;
    this.finished.add(blob.digest);
    this.finishedBytes += Math.max(0, blob.size);
  }

  /** The artifact ended, whatever its status: what it planned and did not finish is done too. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    // An artifact that ended before any manifest was read (present by the inventory, failed at its
    // first request) still counts as sized, with nothing planned: the estimate covers only the rest.
    if (!this.sized) this.stats.planBytes(0, 1);
    this.sized = true;
    this.stats.skipBytes(this.plannedBytes - this.finishedBytes);
  }
}

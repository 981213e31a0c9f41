// Counters of one rule's run, filled by the copiers and read by the report, the progress display and
// the daemon's metrics.
import { EventEmitter } from 'node:events';

export interface BlobCounts {
  uploaded: number;
  mounted: number;
  skipped: number;
}

export type ArtifactStatus = 'copied' | 'present' | 'skipped' | 'failed';

export interface ArtifactResult {
  source: string;
  destination: string;
  sourceRepository?: string | undefined;
  destinationRepository?: string | undefined;
  status: ArtifactStatus;
  digest?: string | undefined;
  /** When the destination digest differs (platform filtering, conversion). */
  destinationDigest?: string | undefined;
  tags: string[];
  kind?: string | undefined;
  /** Why skipped or failed. */
  reason?: string | undefined;
  error?: { name: string; message: string; registry?: string | undefined; repository?: string | undefined; status?: number | undefined; code?: string | undefined } | undefined;
  referrers?: number | undefined;
  bytes?: number | undefined;
}

export interface TransferEvents {
  /** a rule's plan grew: `artifacts` work items (the rule's total so far) will be copied */
  planned: [rule: string, artifacts: number];
  /**
   * What the rule's plan moves, as far as known (totals so far): `bytes` planned, counted from the
   * listing's artifact sizes where the product gives them (Harbor), else from each manifest's blobs as
   * the copier reads it; `artifacts` is how many artifacts those bytes cover (the others are not known yet).
   */
  plannedBytes: [rule: string, bytes: number, artifacts: number];
  /** bytes sent to a destination (after throttling) */
  bytes: [n: number, rule: string, digest?: string];
  /**
   * Planned bytes done without being sent: blobs the destination had (skipped, mounted), and what an
   * artifact that ended had planned beyond its blobs copied (present, failed, skipped). Bytes done =
   * `bytes` + `bytesSkipped`.
   */
  bytesSkipped: [n: number, rule: string];
  blob: [outcome: keyof BlobCounts, rule: string, size: number];
  artifact: [result: ArtifactResult, rule: string];
  blobStart: [digest: string, size: number, rule: string];
  blobEnd: [digest: string, rule: string];
  retry: [registry: string];
}

/** How many results a report keeps: every failure up to the first cap, the others up to the second. */
export const REPORT_FAILURES_KEPT = 1000;
export const REPORT_OTHERS_KEPT = 200;

/**
 * A bounded sample of artifact results: every failure up to `caps.failures`, the other results up to
 * `caps.others`, and the number of each left out (the run's artifact log has them all). Shared by
 * the sync report and the daemon's executions.
 */
export class ResultSample {
  /** The kept results, in arrival order. */
  readonly items: ArtifactResult[] = [];
  readonly omitted = { failed: 0, other: 0 };
  private keptFailures = 0;
  private keptOthers = 0;

  constructor(private readonly caps = { failures: REPORT_FAILURES_KEPT, others: REPORT_OTHERS_KEPT }) {}

  add(result: ArtifactResult): void {
    if (result.status === 'failed') {
      if (this.keptFailures < this.caps.failures) (this.keptFailures++, this.items.push(result));
      else this.omitted.failed++;
    } else if (this.keptOthers < this.caps.others) (this.keptOthers++, this.items.push(result));
    else this.omitted.other++;
  }
}

/**
 * One rule's counters. Bounded whatever the catalog size: counts per status, and the results kept
 * for the report (failures up to REPORT_FAILURES_KEPT, the rest up to REPORT_OTHERS_KEPT, with the
 * number left out); every result also goes to `sink` (the run's JSON Lines file) when there is one.
 */
export class RuleStats {
  readonly blobs: BlobCounts = { uploaded: 0, mounted: 0, skipped: 0 };
  bytes = 0;
  /** Bytes planned so far (see TransferEvents.plannedBytes), the artifacts they cover, and those done without sending. */
  bytesPlanned = 0;
  artifactsSized = 0;
  bytesSkipped = 0;
  /** The results kept for the report (see the class comment); `omitted` counts the others. */
  readonly artifacts: ArtifactResult[];
  readonly omitted: { failed: number; other: number };
  referrers = 0;
  private readonly counts: Record<ArtifactStatus, number> = { copied: 0, present: 0, skipped: 0, failed: 0 };
  private readonly sample: ResultSample;

  constructor(
    readonly rule: string,
    private readonly events?: EventEmitter<TransferEvents>,
    /** Sees every result (the JSON Lines artifact log; deleteRemote's record of what was pushed). */
    private readonly sink?: (result: ArtifactResult) => void,
    caps = { failures: REPORT_FAILURES_KEPT, others: REPORT_OTHERS_KEPT },
  ) {
    this.sample = new ResultSample(caps);
    this.artifacts = this.sample.items;
    this.omitted = this.sample.omitted;
  }

  /** `digest`: the blob the bytes belong to (the progress display shows each blob's share done). */
  addBytes(n: number, digest?: string): void {
    this.bytes += n;
    this.events?.emit('bytes', n, this.rule, digest);
  }

  addBlob(outcome: keyof BlobCounts, size: number): void {
    this.blobs[outcome]++;
    this.events?.emit('blob', outcome, this.rule, size);
    // A blob the destination has (or mounts) is done for the bytes bar without a byte sent.
    if (outcome !== 'uploaded') this.skipBytes(size);
  }

  /** Adds to the bytes planned: `n` more bytes, covering `artifacts` more artifacts. */
  planBytes(n: number, artifacts: number): void {
    if (n <= 0 && artifacts <= 0) return;
    this.bytesPlanned += Math.max(0, n);
    this.artifactsSized += artifacts;
    this.events?.emit('plannedBytes', this.rule, this.bytesPlanned, this.artifactsSized);
  }

  /** Planned bytes done without being sent (see TransferEvents.bytesSkipped). */
  skipBytes(n: number): void {
    if (!(n > 0)) return;
    this.bytesSkipped += n;
    this.events?.emit('bytesSkipped', n, this.rule);
  }

  addArtifact(result: ArtifactResult): void {
    this.counts[result.status]++;
    this.referrers += result.referrers ?? 0;
    this.sample.add(result);
    this.sink?.(result);
    this.events?.emit('artifact', result, this.rule);
  }

  blobStarted(digest: string, size: number): void {
    this.events?.emit('blobStart', digest, size, this.rule);
  }

  blobEnded(digest: string): void {
    this.events?.emit('blobEnd', digest, this.rule);
  }

  count(status: ArtifactStatus): number {
    return this.counts[status];
  }
}

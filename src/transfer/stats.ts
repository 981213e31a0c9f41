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
  /** a rule's plan is ready: `artifacts` work items will be copied, `bytes` sent when known (progress totals) */
  planned: [rule: string, artifacts: number, bytes?: number];
  /** bytes sent to a destination (after throttling) */
  bytes: [n: number, rule: string];
  blob: [outcome: keyof BlobCounts, rule: string, size: number];
  artifact: [result: ArtifactResult, rule: string];
  blobStart: [digest: string, size: number, rule: string];
  blobEnd: [digest: string, rule: string];
  retry: [registry: string];
}

export class RuleStats {
  readonly blobs: BlobCounts = { uploaded: 0, mounted: 0, skipped: 0 };
  bytes = 0;
  readonly artifacts: ArtifactResult[] = [];
  referrers = 0;

  constructor(
    readonly rule: string,
    private readonly events?: EventEmitter<TransferEvents>,
  ) {}

  addBytes(n: number): void {
    this.bytes += n;
    this.events?.emit('bytes', n, this.rule);
  }

  addBlob(outcome: keyof BlobCounts, size: number): void {
    this.blobs[outcome]++;
    this.events?.emit('blob', outcome, this.rule, size);
  }

  addArtifact(result: ArtifactResult): void {
    this.artifacts.push(result);
    this.events?.emit('artifact', result, this.rule);
  }

  blobStarted(digest: string, size: number): void {
    this.events?.emit('blobStart', digest, size, this.rule);
  }

  blobEnded(digest: string): void {
    this.events?.emit('blobEnd', digest, this.rule);
  }

  count(status: ArtifactStatus): number {
    return this.artifacts.filter((a) => a.status === status).length;
  }
}

// Progress of a running sync, fed by Engine.events: the tracker that counts, and pure rendering
// (snapshot in, text out) shared by the CLI display (cli/progress.ts) and the API (createFerry).
//
// The tracker only counts; the rendering functions are pure (snapshot in, text out) so they are
// tested as units. Bytes planned come from the listing where the product gives artifact sizes
// (Harbor), else from each manifest as the copier reads it (TransferEvents.plannedBytes); bytes done
// are those sent plus those that needed no sending (bytesSkipped). The ETA is the bytes still to move
// over the current rate: the planned bytes, extrapolated over the artifacts not counted yet, else the
// bytes per artifact done so far times the artifacts left; each blob in flight shows its share.
import type { EventEmitter } from 'node:events';
import { formatBytes } from '../config/units.js';
import type { ArtifactResult, ArtifactStatus, BlobCounts, TransferEvents } from '../transfer/stats.js';

export interface RuleProgress {
  name: string;
  /** Artifacts planned; undefined while the rule is still listing its source. */
  planned?: number | undefined;
  done: number;
  copied: number;
  present: number;
  skipped: number;
  failed: number;
  /** bytes sent */
  bytes: number;
  /** bytes planned as far as known (undefined: none yet), the artifacts they cover, and those done unsent */
  bytesPlanned?: number | undefined;
  artifactsSized: number;
  bytesSkipped: number;
}

export interface ActiveBlob {
  digest: string;
  size: number;
  rule: string;
  /** bytes of it sent so far (this attempt; a resumed upload counts from where it resumed) */
  bytesDone: number;
  /** ms since the copy started */
  ageMs: number;
}

export interface ProgressSnapshot {
  elapsedMs: number;
  /** bytes sent to destinations */
  bytes: number;
  /** recent rate (sliding window), bytes/s */
  bytesPerSecond: number;
  /** bytes done: sent, plus planned bytes that needed no sending (blobs already there, artifacts present) */
  bytesDone: number;
  /** bytes planned as far as known (every rule's), and the artifacts they cover; undefined while none is known */
  bytesPlanned?: { bytes: number; artifacts: number } | undefined;
  /** total bytes to move, when known: given, or every rule planned and every artifact counted */
  bytesTotal?: number | undefined;
  artifacts: { done: number; failed: number; /** undefined until every rule has planned */ total?: number | undefined };
  blobs: BlobCounts & { done: number; active: number };
  rules: RuleProgress[];
  /** the longest-running first */
  active: ActiveBlob[];
  /** seconds, when it can be estimated */
  etaSeconds?: number | undefined;
  retries: number;
}

export interface TrackerOptions {
  /** Rules expected to run (shown as "listing" until they plan). */
  rules?: string[] | undefined;
  /** Known total bytes (e.g. from a detailed plan). */
  bytesTotal?: number | undefined;
  /** Window of the rate average, ms. Default 10 s. */
  rateWindowMs?: number | undefined;
  now?: (() => number) | undefined;
}

/** Counts what Engine.events reports. Attach before `sync()`, detach after. */
export class ProgressTracker {
  private readonly now: () => number;
  private readonly started: number;
  private firstPlannedAt: number | undefined;
  private readonly rules = new Map<string, RuleProgress>();
  private readonly activeBlobs = new Map<string, { digest: string; size: number; rule: string; since: number; count: number; done: number }>();
  private readonly blobCounts: BlobCounts = { uploaded: 0, mounted: 0, skipped: 0 };
  private bytes = 0;
  private skipped = 0;
  private retries = 0;
  private readonly samples: [number, number][] = [];
  private readonly rateWindowMs: number;
  private readonly detachers: (() => void)[] = [];
  bytesTotal: number | undefined;

  constructor(opts: TrackerOptions = {}) {
    this.now = opts.now ?? Date.now;
    this.started = this.now();
    this.rateWindowMs = opts.rateWindowMs ?? 10_000;
    this.bytesTotal = opts.bytesTotal;
    this.expectRules(opts.rules ?? []);
    this.samples.push([this.started, 0]);
  }

  /** Rules that will run: shown as listing until they plan, and counted before the ETA is given. */
  expectRules(names: string[]): void {
    for (const name of names) this.rule(name);
  }

  private rule(name: string): RuleProgress {
    let r = this.rules.get(name);
    if (!r) this.rules.set(name, (r = { name, done: 0, copied: 0, present: 0, skipped: 0, failed: 0, bytes: 0, artifactsSized: 0, bytesSkipped: 0 }));
    return r;
  }

  /** Subscribes to an engine's events; returns this. */
  attach(events: EventEmitter<TransferEvents>): this {
    const on = <K extends keyof TransferEvents>(name: K, fn: (...args: TransferEvents[K]) => void) => {
      const listener = fn as never;
      events.on(name as never, listener);
      this.detachers.push(() => events.off(name as never, listener));
    };
    on('planned', (rule, artifacts) => this.onPlanned(rule, artifacts));
    on('plannedBytes', (rule, bytes, artifacts) => this.onPlannedBytes(rule, bytes, artifacts));
    on('bytes', (n, rule, digest) => this.onBytes(n, rule, digest));
    on('bytesSkipped', (n, rule) => this.onBytesSkipped(n, rule));
    on('blob', (outcome) => this.onBlob(outcome));
    on('artifact', (result, rule) => this.onArtifact(result, rule));
    on('blobStart', (digest, size, rule) => this.onBlobStart(digest, size, rule));
    on('blobEnd', (digest, rule) => this.onBlobEnd(digest, rule));
    on('retry', () => this.retries++);
    return this;
  }

  detach(): void {
    for (const d of this.detachers.splice(0)) d();
  }

  onPlanned(rule: string, artifacts: number): void {
    this.firstPlannedAt ??= this.now();
    this.rule(rule).planned = artifacts;
  }

  onPlannedBytes(rule: string, bytes: number, artifacts: number): void {
    const r = this.rule(rule);
    r.bytesPlanned = bytes;
    r.artifactsSized = artifacts;
  }

  onBytesSkipped(n: number, rule: string): void {
    this.skipped += n;
    this.rule(rule).bytesSkipped += n;
  }

  onBytes(n: number, rule: string, digest?: string): void {
    this.bytes += n;
    this.rule(rule).bytes += n;
    if (digest) {
      const a = this.activeBlobs.get(`${rule}\n${digest}`);
      if (a) a.done += n;
    }
  }

  onBlob(outcome: keyof BlobCounts): void {
    this.blobCounts[outcome]++;
  }

  onArtifact(result: ArtifactResult, rule: string): void {
    const r = this.rule(rule);
    r.done++;
    r[result.status satisfies ArtifactStatus]++;
  }

  onBlobStart(digest: string, size: number, rule: string): void {
    const key = `${rule}\n${digest}`;
    const a = this.activeBlobs.get(key);
    if (a) a.count++;
    else this.activeBlobs.set(key, { digest, size, rule, since: this.now(), count: 1, done: 0 });
  }

  onBlobEnd(digest: string, rule: string): void {
    const key = `${rule}\n${digest}`;
    const a = this.activeBlobs.get(key);
    if (a && --a.count <= 0) this.activeBlobs.delete(key);
  }

  /** Reads the counters (and records a rate sample). */
  snapshot(): ProgressSnapshot {
    const now = this.now();
    this.samples.push([now, this.bytes]);
    while (this.samples.length > 2 && now - this.samples[1]![0] >= this.rateWindowMs) this.samples.shift();
    const [t0, b0] = this.samples[0]!;
    const bytesPerSecond = now > t0 ? ((this.bytes - b0) * 1000) / (now - t0) : 0;
    const rules = [...this.rules.values()].map((r) => ({ ...r }));
    const allPlanned = rules.length > 0 && rules.every((r) => r.planned !== undefined);
    const done = rules.reduce((n, r) => n + r.done, 0);
    const failed = rules.reduce((n, r) => n + r.failed, 0);
    const total = allPlanned ? rules.reduce((n, r) => n + (r.planned ?? 0), 0) : undefined;
    const sizedRules = rules.filter((r) => r.bytesPlanned !== undefined);
    const bytesPlanned = sizedRules.length
      ? { bytes: sizedRules.reduce((n, r) => n + r.bytesPlanned!, 0), artifacts: sizedRules.reduce((n, r) => n + r.artifactsSized, 0) }
      : undefined;
    const complete = allPlanned && bytesPlanned !== undefined && rules.every((r) => r.artifactsSized >= (r.planned ?? 0));
    const snap: ProgressSnapshot = {
      elapsedMs: now - this.started,
      bytes: this.bytes,
      bytesDone: this.bytes + this.skipped,
      bytesPerSecond,
      bytesPlanned,
      bytesTotal: this.bytesTotal ?? (complete ? bytesPlanned.bytes : undefined),
      artifacts: { done, failed, total },
      blobs: {
        ...this.blobCounts,
        done: this.blobCounts.uploaded + this.blobCounts.mounted + this.blobCounts.skipped,
        active: this.activeBlobs.size,
      },
      rules,
      active: [...this.activeBlobs.values()]
        .sort((a, b) => a.since - b.since)
        .map((a) => ({ digest: a.digest, size: a.size, rule: a.rule, bytesDone: a.done, ageMs: now - a.since })),
      retries: this.retries,
    };
    snap.etaSeconds = estimateEta({ ...snap, bytes: snap.bytesDone }, this.firstPlannedAt === undefined ? undefined : now - this.firstPlannedAt);
    return snap;
  }
}

/**
 * Seconds left, always from bytes and the current rate (so a slower or faster link changes it at
 * once): the bytes still to move divided by the rate. `bytes` is what is done (sent, plus what needed
 * no sending). The bytes to move are the known total when there is one; else the bytes planned so
 * far, extrapolated at their average over the artifacts not counted yet; else what the artifacts done
 * so far moved on average, times the artifacts left, plus what the blobs in flight still lack. With
 * no bytes moving (everything present, or stalled) it falls back to the share of artifacts done since
 * planning ended (`sincePlannedMs`).
 */
export function estimateEta(
  s: Pick<ProgressSnapshot, 'bytes' | 'bytesPerSecond' | 'bytesTotal' | 'bytesPlanned'> & {
    artifacts: Pick<ProgressSnapshot['artifacts'], 'done' | 'total'> & { failed?: number };
    active?: Pick<ActiveBlob, 'size' | 'bytesDone'>[] | undefined;
  },
  sincePlannedMs?: number,
): number | undefined {
  const { total, done } = s.artifacts;
  if (total !== undefined && done >= total) return 0;
  if (s.bytesPerSecond > 0) {
    if (s.bytesTotal !== undefined && s.bytesTotal > 0) return Math.max(0, (s.bytesTotal - s.bytes) / s.bytesPerSecond);
    const planned = s.bytesPlanned;
    if (planned && planned.artifacts > 0 && planned.bytes > 0 && total !== undefined) {
      const expected = planned.bytes + (planned.bytes / planned.artifacts) * Math.max(0, total - planned.artifacts);
      return Math.max(0, (expected - s.bytes) / s.bytesPerSecond);
    }
    if (total !== undefined && done > 0) {
      const inFlight = (s.active ?? []).reduce((n, a) => n + Math.max(0, a.size - a.bytesDone), 0);
      const sentInFlight = (s.active ?? []).reduce((n, a) => n + a.bytesDone, 0);
      const perArtifact = Math.max(0, s.bytes - sentInFlight) / done;
      return (perArtifact * Math.max(0, total - done - (s.active?.length ? 1 : 0)) + inFlight) / s.bytesPerSecond;
    }
  }
  if (total !== undefined && done > 0 && sincePlannedMs !== undefined && sincePlannedMs > 0) return ((sincePlannedMs / 1000) * (total - done)) / done;
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Formatting (pure)

export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '--';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function formatRate(bytesPerSecond: number): string {
  return `${formatBytes(Math.round(bytesPerSecond))}/s`;
}

function artifactsText(a: ProgressSnapshot['artifacts']): string {
  return `${a.done}/${a.total ?? '?'} artifacts${a.failed ? ` (${a.failed} failed)` : ''}`;
}

/** Bytes done of planned ("+": more to be counted as manifests are read), else bytes sent. */
function bytesText(s: ProgressSnapshot): string {
  if (s.bytesTotal !== undefined) return `${formatBytes(Math.min(s.bytesDone, s.bytesTotal))} / ${formatBytes(s.bytesTotal)}`;
  if (s.bytesPlanned) return `${formatBytes(Math.min(s.bytesDone, s.bytesPlanned.bytes))} / ${formatBytes(s.bytesPlanned.bytes)}+`;
  return formatBytes(s.bytes);
}

/** The one-line summary logged every ~10 s when stderr is not a TTY. */
export function formatProgressLine(s: ProgressSnapshot): string {
  return (
    `progress: ${artifactsText(s.artifacts)}, ${bytesText(s)} ${s.bytesTotal !== undefined || s.bytesPlanned ? 'done' : 'sent'} at ${formatRate(s.bytesPerSecond)}, ETA ${formatDuration(s.etaSeconds)}, ` +
    `blobs ${s.blobs.done} done (${s.blobs.uploaded} uploaded, ${s.blobs.mounted} mounted, ${s.blobs.skipped} skipped), ${s.blobs.active} active` +
    (s.retries ? `, ${s.retries} retries` : '') +
    `, ${formatDuration(s.elapsedMs / 1000)} elapsed`
  );
}

/** Structured fields logged with that line (for log pipelines). */
export function progressFields(s: ProgressSnapshot): Record<string, unknown> {
  return {
    artifactsDone: s.artifacts.done,
    artifactsTotal: s.artifacts.total ?? null,
    artifactsFailed: s.artifacts.failed,
    bytes: s.bytes,
    bytesDone: s.bytesDone,
    bytesPlanned: s.bytesPlanned?.bytes ?? null,
    bytesTotal: s.bytesTotal ?? null,
    bytesPerSecond: Math.round(s.bytesPerSecond),
    etaSeconds: s.etaSeconds === undefined ? null : Math.round(s.etaSeconds),
    blobsDone: s.blobs.done,
    blobsActive: s.blobs.active,
    retries: s.retries,
    rules: Object.fromEntries(s.rules.map((r) => [r.name, { done: r.done, planned: r.planned ?? null, failed: r.failed }])),
  };
}

function fit(line: string, width: number): string {
  const chars = [...line];
  return chars.length <= width ? line : `${chars.slice(0, Math.max(1, width - 1)).join('')}…`;
}

export interface RenderOptions {
  /** terminal columns; lines are cut to fit so none wraps */
  width?: number | undefined;
  /** active blobs listed by digest; the rest are counted */
  maxActive?: number | undefined;
}

/** The TTY display: an overall line, one line per rule, then the active blobs. */
export function renderProgress(s: ProgressSnapshot, opts: RenderOptions = {}): string[] {
  const width = Math.max(20, opts.width ?? 100);
  const maxActive = opts.maxActive ?? 4;
  const lines = [
    `ferry  ${bytesText(s)}  ${formatRate(s.bytesPerSecond)}  ETA ${formatDuration(s.etaSeconds)}  ·  ${artifactsText(s.artifacts)}  ·  ` +
      `blobs ${s.blobs.done} done, ${s.blobs.active} active  ·  ${formatDuration(s.elapsedMs / 1000)}`,
  ];
  const nameWidth = Math.min(24, Math.max(0, ...s.rules.map((r) => r.name.length)));
  for (const r of s.rules) {
    const state =
      r.planned === undefined
        ? 'listing…'
        : `${r.done}/${r.planned} artifacts` +
          (r.failed ? `, ${r.failed} failed` : '') +
          (r.present ? `, ${r.present} present` : '') +
          (r.skipped ? `, ${r.skipped} skipped` : '') +
          `  ${r.bytesPlanned !== undefined ? `${formatBytes(Math.min(r.bytes + r.bytesSkipped, r.bytesPlanned))} / ${formatBytes(r.bytesPlanned)}${r.artifactsSized < r.planned ? '+' : ''}` : formatBytes(r.bytes)}` +
          (r.done >= r.planned ? '  done' : '');
    lines.push(`  ${r.name.padEnd(nameWidth)}  ${state}`);
  }
  for (const a of s.active.slice(0, maxActive)) {
    const digest = a.digest.replace(/^(sha256:)?(.{12}).*$/, '$1$2');
    const share = a.size > 0 ? `${String(Math.min(100, Math.floor((a.bytesDone * 100) / a.size))).padStart(3)}%` : '';
    lines.push(`    ↑ ${digest}  ${`${formatBytes(a.bytesDone)} / ${formatBytes(a.size)}`.padStart(21)} ${share}  ${a.rule}  ${formatDuration(a.ageMs / 1000)}`);
  }
  if (s.active.length > maxActive) lines.push(`    … ${s.active.length - maxActive} more blob(s) in flight`);
  return lines.map((l) => fit(l, width));
}

// Runs rules: never two runs of one rule at once. A trigger that arrives while the rule runs queues
// exactly one follow-up run; later triggers merge into that follow-up (a full run absorbs webhook
// artifacts; webhook artifacts and deletions accumulate, the later event winning for one tag).
// Bursts stay bounded: a follow-up lists at most MAX_TRIGGERS triggers (the first and the newest) and
// MAX_EVENT_WORK artifacts plus deletions (beyond that it becomes a full run of the rule), and its
// history record is written at most once per SAVE_DEBOUNCE_MS while triggers keep arriving.
import type { RuleConfig } from '../config/schema.js';
import type { RuleReport } from '../engine/report.js';
import type { Logger } from '../log.js';
import type { SourceArtifact } from '../plan/types.js';
import { type ArtifactResult, type BlobCounts, ResultSample } from '../transfer/stats.js';
import type { EngineLike, EnginePool } from './engines.js';
import { type DeleteRequest, type Execution, type RunRequest, type TriggerInfo, emptyExecution } from './execution.js';
import type { History } from './history.js';
import { deleteAtDestination } from '../engine/delete-remote.js';
import { estimateEta } from '../engine/progress.js';

/** Triggers an execution lists; beyond that the oldest merged ones (never the first) are counted only. */
export const MAX_TRIGGERS = 100;
/** Webhook artifacts plus deletions a follow-up holds; more turn it into a full run of the rule. */
export const MAX_EVENT_WORK = 5000;
/** A queued follow-up that triggers keep merging into is written to the history at most this often. */
export const SAVE_DEBOUNCE_MS = 1000;

/** Why a run was aborted: by the API (cancelled) or by a shutdown (interrupted, resumed on restart). */
class StopReason extends Error {
  constructor(readonly kind: 'cancel' | 'shutdown') {
    super(kind === 'cancel' ? 'cancelled through the API' : 'daemon shutting down');
  }
}

interface Active {
  exec: Execution;
  /** Aborts transfers in flight (cancel, or the end of the grace period). */
  controller: AbortController;
  /** Graceful stop: no new artifact or blob copy starts; copies in flight go on. */
  stopper: AbortController;
  /** Blobs being copied right now: digest → size and start. */
  inFlight: Map<string, { size: number; since: number }>;
  done: Promise<void>;
  planned?: number | undefined;
  /** Planned bytes as far as known, the artifacts they cover, and those done without sending (TransferEvents). */
  bytesPlanned?: number | undefined;
  artifactsSized: number;
  bytesSkipped: number;
  /** Bytes sent per whole second (unix second → bytes), the last RATE_HISTORY_S + 1 seconds. */
  perSecond: Map<number, number>;
  /** The results `exec.items` shows while the run goes on: bounded as the sync report's. */
  sample: ResultSample;
}

export interface LiveRun {
  id: number;
  rule: string;
  trigger: TriggerInfo['type'];
  startedAt: string;
  elapsedMs: number;
  bytes: number;
  artifacts: Execution['artifacts'];
  blobs: BlobCounts;
  inFlight: { digest: string; size: number; elapsedMs: number }[];
  queued: boolean;
  /** Artifacts the plan holds (undefined while the source is being listed). */
  planned?: number | undefined;
  /**
   * Bytes the plan moves as far as known (the listing's sizes, else each manifest's blobs once read),
   * undefined until the first is known; `bytesComplete` once every planned artifact is counted.
   */
  bytesPlanned?: number | undefined;
  bytesComplete: boolean;
  /** Bytes done: sent, plus planned bytes that needed no sending (blobs already there, artifacts present). */
  bytesDone: number;
  /** Seconds left, from the bytes still to move and the current rate (undefined when unknown). */
  etaSeconds?: number | undefined;
  /** Artifacts finished: copied + present + skipped + failed. */
  done: number;
  /** Bytes per second over the last RATE_WINDOW_S seconds. */
  rate: number;
  /** Bytes sent in each of the last RATE_HISTORY_S whole seconds, oldest first (the rate chart). */
  rateHistory: number[];
}

/** Seconds the current rate averages over. */
export const RATE_WINDOW_S = 5;
/** Seconds of per-second rates the live view keeps for its chart. */
export const RATE_HISTORY_S = 60;

export interface RunnerHooks {
  onStart?: (e: Execution) => void;
  onFinish?: (e: Execution) => void;
}

export interface TriggerResult {
  execution: Execution;
  /** true: waits for the running one; false: started now. */
  queued: boolean;
  /** true: merged into a follow-up that was already queued. */
  merged: boolean;
}

export class Runner {
  private readonly active = new Map<string, Active>();
  private readonly queued = new Map<string, Execution>();
  /** Debounced history writes of queued follow-ups, by execution id. */
  private readonly pendingSaves = new Map<number, NodeJS.Timeout>();
  private draining = false;

  constructor(
    private readonly engines: EnginePool,
    private readonly history: History,
    private readonly logger: Logger,
    private readonly hooks: RunnerHooks = {},
  ) {}

  /** Whether a trigger of `rule` would merge into its queued follow-up (and need no new execution id). */
  hasFollowUp(rule: string): boolean {
    return this.queued.has(rule);
  }

  /**
   * Starts a run of `rule` now, or queues (merges into) its one follow-up when it is running. `id` is
   * the new execution's id when the caller allocated one (shared history); unused when it merges.
   */
  trigger(rule: string, trigger: TriggerInfo, request: RunRequest, id?: number): TriggerResult {
    if (this.draining) throw new Error('the daemon is shutting down');
    const waiting = this.queued.get(rule);
    if (waiting) {
      addTrigger(waiting, trigger);
      const merged = mergeRequests(waiting.request, request);
      if (!merged.full && merged.artifacts.length + merged.deletions.length > MAX_EVENT_WORK) {
        this.logger.warn({ rule, execution: waiting.id, artifacts: merged.artifacts.length, deletions: merged.deletions.length }, 'too many webhook artifacts queued: the follow-up runs the whole rule instead');
        waiting.errors = [...waiting.errors, `more than ${MAX_EVENT_WORK} webhook artifacts and deletions queued: ran the whole rule instead`];
        waiting.request = { full: true, artifacts: [], deletions: [] };
      } else {
        waiting.request = merged;
      }
      this.saveSoon(waiting);
      this.logger.debug({ rule, execution: waiting.id, trigger: trigger.type }, 'trigger merged into the queued follow-up run');
      return { execution: waiting, queued: true, merged: true };
    }
    const exec = emptyExecution(id ?? this.history.nextId(), rule, trigger, normalize(request), new Date());
    if (this.active.has(rule)) {
      this.queued.set(rule, exec);
      this.history.save(exec);
      this.logger.info({ rule, execution: exec.id, trigger: trigger.type }, 'rule is running: follow-up run queued');
      return { execution: exec, queued: true, merged: false };
    }
    this.start(exec);
    return { execution: exec, queued: false, merged: false };
  }

  /** Cancels a running (abort) or queued (drop) execution. */
  cancel(id: number): 'cancelling' | 'cancelled' | 'finished' | 'unknown' {
    for (const a of this.active.values()) {
      if (a.exec.id !== id) continue;
      if (!a.controller.signal.aborted) a.controller.abort(new StopReason('cancel'));
      return 'cancelling';
    }
    for (const [rule, e] of this.queued) {
      if (e.id !== id) continue;
      this.queued.delete(rule);
      this.finish(e, 'cancelled', ['cancelled through the API before it started']);
      return 'cancelled';
    }
    return this.history.peek(id) ? 'finished' : 'unknown';
  }

  /** Drops queued runs of rules that a reloaded config no longer has. */
  forgetRules(keep: Set<string>): void {
    for (const [rule, e] of this.queued) {
      if (keep.has(rule)) continue;
      this.queued.delete(rule);
      this.finish(e, 'cancelled', ['the rule was removed from the config']);
    }
  }

  state(rule: string): { running?: number; queued?: number } {
    return { running: this.active.get(rule)?.exec.id, queued: this.queued.get(rule)?.id };
  }

  /** A running or queued execution (live copy), else undefined. */
  current(id: number): Execution | undefined {
    for (const a of this.active.values()) if (a.exec.id === id) return a.exec;
    for (const e of this.queued.values()) if (e.id === id) return e;
    return undefined;
  }

  live(now = Date.now()): LiveRun[] {
    const runs: LiveRun[] = [];
    const second = Math.floor(now / 1000);
    for (const a of this.active.values()) {
      const started = Date.parse(a.exec.startedAt ?? a.exec.queuedAt);
      const counts = a.exec.artifacts;
      // Whole seconds before the current one, oldest first; the current second is still filling.
      const rateHistory = Array.from({ length: RATE_HISTORY_S }, (_, i) => a.perSecond.get(second - RATE_HISTORY_S + i) ?? 0);
      const window = Math.max(1, Math.min(RATE_WINDOW_S, Math.floor((now - started) / 1000)));
      const done = counts.copied + counts.present + counts.skipped + counts.failed;
      const rate = Math.round(rateHistory.slice(-window).reduce((n, b) => n + b, 0) / window);
      const bytesDone = a.exec.bytes + a.bytesSkipped;
      runs.push({
        planned: a.planned,
        bytesPlanned: a.bytesPlanned,
        bytesComplete: a.planned !== undefined && a.artifactsSized >= a.planned,
        bytesDone,
        etaSeconds: estimateEta({
          bytes: bytesDone,
          bytesPerSecond: rate,
          bytesPlanned: a.bytesPlanned === undefined ? undefined : { bytes: a.bytesPlanned, artifacts: a.artifactsSized },
          artifacts: { done, total: a.planned },
        }),
        done,
        rate,
        rateHistory,
        id: a.exec.id,
        rule: a.exec.rule,
        trigger: a.exec.triggers[0]?.type ?? 'manual',
        startedAt: a.exec.startedAt ?? a.exec.queuedAt,
        elapsedMs: now - started,
        bytes: a.exec.bytes,
        artifacts: { ...a.exec.artifacts },
        blobs: { ...a.exec.blobs },
        inFlight: [...a.inFlight].map(([digest, b]) => ({ digest, size: b.size, elapsedMs: now - b.since })),
        queued: this.queued.has(a.exec.rule),
      });
    }
    return runs.sort((x, y) => x.id - y.id);
  }

  get running(): number {
    return this.active.size;
  }

  // --- engine events (one run per rule at a time, so the rule name identifies the execution) ---

  onBytes(n: number, rule: string, now = Date.now()): void {
    const a = this.active.get(rule);
    if (!a) return;
    a.exec.bytes += n;
    const second = Math.floor(now / 1000);
    a.perSecond.set(second, (a.perSecond.get(second) ?? 0) + n);
    if (a.perSecond.size > RATE_HISTORY_S + 1) {
      for (const s of a.perSecond.keys()) if (s < second - RATE_HISTORY_S) a.perSecond.delete(s);
    }
  }

  /** The plan grew: the artifacts the progress bar counts towards. */
  onPlanned(rule: string, artifacts: number): void {
    const a = this.active.get(rule);
    if (!a) return;
    a.planned = artifacts;
    a.exec.artifacts.planned = artifacts;
  }

  /** The planned bytes grew (totals so far): the bytes bar's maximum, also kept in the execution record. */
  onPlannedBytes(rule: string, bytes: number, artifacts: number): void {
    const a = this.active.get(rule);
    if (!a) return;
    a.bytesPlanned = bytes;
    a.artifactsSized = artifacts;
    a.exec.bytesPlanned = bytes;
  }

  /** Planned bytes done without being sent (blobs already there, artifacts present). */
  onBytesSkipped(n: number, rule: string): void {
    const a = this.active.get(rule);
    if (a) a.bytesSkipped += n;
  }

  /** Queued follow-ups (one per rule at most), oldest first. */
  queuedRuns(): Execution[] {
    return [...this.queued.values()].sort((x, y) => x.id - y.id);
  }

  onBlob(outcome: keyof BlobCounts, rule: string): void {
    const a = this.active.get(rule);
    if (a) a.exec.blobs[outcome]++;
  }

  onBlobStart(digest: string, size: number, rule: string): void {
    this.active.get(rule)?.inFlight.set(digest, { size, since: Date.now() });
  }

  onBlobEnd(digest: string, rule: string): void {
    this.active.get(rule)?.inFlight.delete(digest);
  }

  onArtifact(result: ArtifactResult, rule: string): void {
    const a = this.active.get(rule);
    if (!a) return;
    a.sample.add(result);
    a.exec.itemsOmitted = itemsOmitted(a.sample.omitted);
    a.exec.artifacts[result.status]++;
  }

  /** Resolves when nothing runs (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.active.size) await Promise.all([...this.active.values()].map((a) => a.done));
  }

  /**
   * Stops: queued runs are marked interrupted (run again on restart); running ones start no new
   * artifact or blob copy, get `graceMs` for the copies in flight, then are aborted; they end
   * interrupted too, and the next start continues them from the state.
   */
  async shutdown(graceMs: number): Promise<void> {
    this.draining = true;
    for (const [rule, e] of this.queued) {
      this.queued.delete(rule);
      this.finish(e, 'interrupted', ['the daemon stopped before this run started; it runs again at the next start']);
    }
    if (!this.active.size) return;
    for (const a of this.active.values()) if (!a.stopper.signal.aborted) a.stopper.abort(new StopReason('shutdown'));
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, graceMs);
    });
    await Promise.race([this.idle(), grace]);
    clearTimeout(timer);
    this.abortAll();
    await this.idle();
  }

  /** Aborts every running run at once (a second signal during shutdown). */
  abortAll(): void {
    this.draining = true;
    for (const a of this.active.values()) if (!a.controller.signal.aborted) a.controller.abort(new StopReason('shutdown'));
  }

  // --- internals ---

  /** Writes a queued execution soon: a burst of merged triggers costs one write per SAVE_DEBOUNCE_MS. */
  private saveSoon(exec: Execution): void {
    if (this.pendingSaves.has(exec.id)) return;
    const timer = setTimeout(() => {
      this.pendingSaves.delete(exec.id);
      this.history.save(exec);
    }, SAVE_DEBOUNCE_MS);
    timer.unref();
    this.pendingSaves.set(exec.id, timer);
  }

  /** Drops a pending debounced write (the caller saves the execution now). */
  private cancelSave(exec: Execution): void {
    const timer = this.pendingSaves.get(exec.id);
    if (timer) clearTimeout(timer);
    this.pendingSaves.delete(exec.id);
  }

  private start(exec: Execution): void {
    this.cancelSave(exec);
    const sample = new ResultSample();
    const active: Active = { exec, controller: new AbortController(), stopper: new AbortController(), inFlight: new Map(), done: Promise.resolve(), perSecond: new Map(), artifactsSized: 0, bytesSkipped: 0, sample };
    exec.items = sample.items;
    this.active.set(exec.rule, active);
    exec.status = 'running';
    exec.startedAt = new Date().toISOString();
    this.history.save(exec);
    this.hooks.onStart?.(exec);
    this.logger.info({ rule: exec.rule, execution: exec.id, trigger: exec.triggers[0]?.type }, 'run started');
    active.done = this.execute(active)
      .catch((err: unknown) => {
        this.logger.error({ rule: exec.rule, execution: exec.id, err: (err as Error).message }, 'run crashed');
        this.finish(exec, 'failed', [(err as Error).message]);
      })
      .finally(() => {
        this.active.delete(exec.rule);
        const next = this.queued.get(exec.rule);
        if (next && !this.draining) {
          this.queued.delete(exec.rule);
          this.start(next);
        }
      });
  }

  private async execute(active: Active): Promise<void> {
    const { exec, controller, stopper } = active;
    const signal = controller.signal;
    const stop = stopper.signal;
    const { engine, release } = this.engines.acquire();
    try {
      const rule = engine.config.rules.find((r) => r.name === exec.rule);
      if (!rule) {
        this.finish(exec, 'failed', [`rule "${exec.rule}" is not in the config any more`]);
        return;
      }
      const req = exec.request;
      const errors: string[] = [];
      let status: Execution['status'] = 'ok';
      if (req.full || req.artifacts.length) {
        const superseded: ArtifactResult[] = [];
        const given = req.full ? undefined : confirmedAtSource(engine, rule, req.artifacts, superseded, this.logger);
        const report = await engine.sync({
          rules: [rule.name],
          signal,
          stop,
          skipPreflight: true,
          artifacts: given ? (r: RuleConfig) => (r.name === rule.name ? given : []) : undefined,
        });
        const r = report.rules[0];
        if (r) {
          applyReport(exec, r);
          // Webhook artifacts superseded at the source (a handful per event): kept under the same caps.
          if (superseded.length) {
            const sample = new ResultSample();
            for (const item of [...exec.items, ...superseded]) sample.add(item);
            exec.items = sample.items;
            exec.itemsOmitted = itemsOmitted({ failed: (exec.itemsOmitted?.failed ?? 0) + sample.omitted.failed, other: (exec.itemsOmitted?.other ?? 0) + sample.omitted.other });
            exec.artifacts.planned += superseded.length;
            exec.artifacts.skipped += superseded.length;
          }
          errors.push(...reportErrors(r));
          status = r.status === 'planned' ? 'ok' : r.status;
        }
      }
      if (req.deletions.length && !signal.aborted && !stop.aborted) {
        if (!rule.deleteRemote) {
          errors.push(`${req.deletions.length} deletion(s) at the source ignored: deleteRemote is off for this rule`);
        } else {
          exec.deletions = await deleteAtDestination(engine, rule, req.deletions, this.history, this.logger, signal);
          for (const d of exec.deletions) if (d.status === 'failed') errors.push(`delete ${d.destination ?? d.source}: ${d.reason}`);
          if (exec.deletions.some((d) => d.status === 'failed') && status === 'ok') status = 'partial';
        }
      }
      if (signal.aborted || stop.aborted) {
        const reason = (signal.aborted ? signal.reason : stop.reason) as StopReason | undefined;
        status = reason?.kind === 'shutdown' ? 'interrupted' : 'cancelled';
      }
      this.finish(exec, status, errors);
    } finally {
      release();
    }
  }

  private finish(exec: Execution, status: Execution['status'], errors: string[]): void {
    this.cancelSave(exec);
    exec.status = status;
    exec.errors = [...exec.errors, ...errors];
    exec.finishedAt = new Date().toISOString();
    if (exec.startedAt) exec.durationMs = Date.parse(exec.finishedAt) - Date.parse(exec.startedAt);
    this.history.save(exec);
    if (exec.startedAt) this.hooks.onFinish?.(exec);
    const level = status === 'ok' ? 'info' : status === 'cancelled' || status === 'interrupted' ? 'warn' : 'error';
    this.logger[level]({ rule: exec.rule, execution: exec.id, status, artifacts: exec.artifacts, bytes: exec.bytes, durationMs: exec.durationMs }, 'run finished');
  }
}

function applyReport(exec: Execution, r: RuleReport): void {
  exec.artifacts = { ...r.artifacts };
  exec.blobs = { ...r.blobs };
  exec.bytes = r.bytes;
  if (r.bytesPlanned !== undefined) exec.bytesPlanned = r.bytesPlanned;
  exec.items = r.items;
  exec.itemsOmitted = r.itemsOmitted ? itemsOmitted(r.itemsOmitted) : undefined;
  if (r.artifactLog) exec.artifactLog = r.artifactLog;
}

function itemsOmitted(o: { failed: number; other: number }): Execution['itemsOmitted'] {
  return o.failed || o.other ? { ...o } : undefined;
}

function reportErrors(r: RuleReport): string[] {
  const errors: string[] = [];
  if (r.error) errors.push(r.error);
  for (const p of r.problems) errors.push(`${p.sourceRepository}${p.destinationRepository ? ` -> ${p.destinationRepository}` : ''}: ${p.message}`);
  for (const i of r.items) if (i.status === 'failed') errors.push(`${i.source} -> ${i.destination}: ${i.reason ?? 'failed'}`);
  return errors;
}

/** Adds a merged trigger, keeping the first (what started it) and the newest MAX_TRIGGERS - 1. */
export function addTrigger(exec: Execution, trigger: TriggerInfo): void {
  exec.triggers.push(trigger);
  if (exec.triggers.length > MAX_TRIGGERS) {
    exec.triggers.splice(1, 1);
    exec.droppedTriggers = (exec.droppedTriggers ?? 0) + 1;
  }
}

// --- event artifacts checked at copy time ---

/**
 * The event's artifacts as the engine takes them, each checked just before it is planned and copied:
 * a tag that the source now points at another digest (pushed again since the event), or no longer has,
 * is left out, so an old event never puts an older digest at the destination than the source's. An
 * artifact left with no tag is skipped with the reason (added to `skipped`). Artifacts without a digest
 * or without tags (untagged pushes, ChartMuseum charts) need no check. A failed check lets the copy
 * go on: it reports the registry's error itself.
 */
function confirmedAtSource(engine: EngineLike, rule: RuleConfig, artifacts: SourceArtifact[], skipped: ArtifactResult[], logger: Logger): SourceArtifact[] | AsyncIterable<SourceArtifact> {
  if (!artifacts.some((a) => a.digest && a.tags.length && !a.chartMuseum)) return artifacts;
  return (async function* () {
    for (const a of artifacts) {
      if (!a.digest || !a.tags.length || a.chartMuseum) {
        yield a;
        continue;
      }
      const kept: string[] = [];
      const moved: string[] = [];
      try {
        const client = engine.provider(rule.source).client;
        for (const tag of a.tags) {
          const now = await client.headManifest(a.repository, tag);
          if (now?.digest === a.digest) kept.push(tag);
          else moved.push(`${tag} (${now ? `now ${now.digest}` : 'gone'})`);
        }
      } catch (err) {
        logger.debug({ rule: rule.name, repository: a.repository, err: (err as Error).message }, 'could not check the event tag at the source; copying as the event said');
        yield a;
        continue;
      }
      if (moved.length) logger.info({ rule: rule.name, repository: a.repository, digest: a.digest, moved }, 'event tags moved at the source since the event: left out');
      if (kept.length) {
        yield { ...a, tags: kept };
        continue;
      }
      skipped.push({
        source: `${rule.source}/${a.repository}@${a.digest}`,
        destination: rule.destination,
        sourceRepository: a.repository,
        status: 'skipped',
        digest: a.digest,
        tags: a.tags,
        reason: `the source tag no longer points at the event's digest: ${moved.join(', ')}; a later push supersedes this event`,
      });
    }
  })();
}

// --- merging requests ---

function artifactKeys(a: { repository: string; digest?: string | undefined; tags?: string[]; tag?: string | undefined }): string[] {
  const keys: string[] = [];
  if (a.digest) keys.push(`${a.repository}@${a.digest}`);
  for (const t of a.tags ?? (a.tag ? [a.tag] : [])) keys.push(`${a.repository}:${t}`);
  return keys;
}

function normalize(r: RunRequest): RunRequest {
  return mergeRequests({ full: r.full, artifacts: [], deletions: [] }, r);
}

/**
 * `later` wins: an artifact pushed after being deleted is copied, not deleted, and vice versa; and a
 * tag pushed again supersedes its earlier push (the earlier artifact loses that tag, and goes when it
 * has none left), so one run never copies two digests to one tag.
 */
export function mergeRequests(earlier: RunRequest, later: RunRequest): RunRequest {
  const full = earlier.full || later.full;
  const laterDeleted = new Set(later.deletions.flatMap(artifactKeys));
  const laterPushed = new Set(later.artifacts.flatMap(artifactKeys));
  // `earlier` is merged already (each tag once): only the later pushes need placing.
  const artifacts = full ? [] : laterDeleted.size ? earlier.artifacts.filter((a) => !artifactKeys(a).some((k) => laterDeleted.has(k))) : [...earlier.artifacts];
  if (!full) for (const a of later.artifacts) addPush(artifacts, a);
  const deletions = new Map<string, DeleteRequest>();
  for (const d of [...earlier.deletions.filter((d) => !artifactKeys(d).some((k) => laterPushed.has(k))), ...later.deletions]) {
    deletions.set(artifactKeys(d).join('|') || d.repository, d);
  }
  return { full, artifacts, deletions: [...deletions.values()] };
}

/** Adds a push after those in `list`: it takes its tags from earlier pushes and absorbs a push of its digest. */
function addPush(list: SourceArtifact[], pushed: SourceArtifact): void {
  const tags = new Set(pushed.tags);
  let merged = pushed;
  for (let i = list.length - 1; i >= 0; i--) {
    const e = list[i]!;
    if (e.repository !== pushed.repository) continue;
    if (pushed.digest !== undefined && e.digest === pushed.digest) {
      // The same artifact again: one entry, with every tag either event named.
      merged = { ...e, ...pushed, tags: [...new Set([...e.tags, ...pushed.tags])] };
      list.splice(i, 1);
      continue;
    }
    if (!e.tags.some((t) => tags.has(t))) {
      // An untagged push (digest only) of the same artifact without a digest in the later one: unrelated.
      continue;
    }
    const rest = e.tags.filter((t) => !tags.has(t));
    if (rest.length) list[i] = { ...e, tags: rest };
    else list.splice(i, 1);
  }
  list.push(merged);
}

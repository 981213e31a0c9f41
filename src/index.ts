// The public programmatic API: `import { createFerry } from 'ferry'`. One Ferry object wraps one
// Engine (registries, state database, blob queue, bandwidth cap) for as long as the caller keeps it;
// close() releases its connections and the state (and its lock). Documented in docs/api.md ("Programmatic API").
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { type ProgressSnapshot, ProgressTracker } from './engine/progress.js';
import { RefError, resolveRef, type ImageRef } from './engine/refs.js';
import { ONE_SHOT_UNUSED_SECTIONS, loadConfig, parseConfig } from './config/load.js';
import type { FerryConfig, FerryConfigInput } from './config/schema.js';
import { parseBandwidth } from './config/units.js';
import { copyRef } from './engine/copy-ref.js';
import { Engine } from './engine/engine.js';
import { type Difference, type VerifyReport, verifyRules } from './engine/verify.js';
import type { SyncReport } from './engine/report.js';
import { createLogger, silentLogger } from './log.js';
import { type Shard, parseShard, shardFilter } from './plan/shard.js';
import type { ArtifactResult, BlobCounts, TransferEvents } from './transfer/stats.js';

// ---- re-exports: the config contract (zod schemas and the types inferred from them), reports, errors

export { configSchema, registrySchema, ruleSchema, filtersSchema, transferSchema, daemonSchema } from './config/schema.js';
export type {
  ArtifactKind,
  DaemonConfig,
  FerryConfig,
  FerryConfigInput,
  FiltersConfig,
  FlattenLevel,
  RegistryConfig,
  RuleConfig,
  TransferConfig,
} from './config/schema.js';
export { ConfigError, loadConfig, parseConfig } from './config/load.js';
export { parseBandwidth, parseSize } from './config/units.js';
export type { ArtifactCounts, PlannedCopy, RuleReport, SyncReport } from './engine/report.js';
export { formatTextReport } from './engine/report.js';
export type { Difference, DifferenceKind, VerifyReport, VerifyRuleReport } from './engine/verify.js';
export type { ArtifactResult, ArtifactStatus, BlobCounts, TransferEvents } from './transfer/stats.js';
export type { ActiveBlob, ProgressSnapshot, RuleProgress } from './engine/progress.js';
export { formatProgressLine, renderProgress } from './engine/progress.js';
export { Engine, PreflightError, UnknownRuleError, type EngineOptions, type SyncOptions } from './engine/engine.js';
export { type Shard, ShardError, parseShard, shardOf, shardFilter } from './plan/shard.js';
export { RefError, type ImageRef } from './engine/refs.js';
export { StateLockedError } from './state/types.js';

// ---- the API

export interface FerryOptions {
  /** A pino logger; default: no logs. See also `logLevel`. */
  logger?: Logger | undefined;
  /** Shorthand for a pino logger writing JSON lines to stderr at this level (ignored with `logger`). */
  logLevel?: string | undefined;
  /** Overrides transfer.stateDir; `false` keeps the state in memory only. */
  stateDir?: string | false | undefined;
  /** Variables for `${NAME}` in the config (default process.env). */
  env?: NodeJS.ProcessEnv | undefined;
  /** How often `progress` events are emitted while a run is going (ms, default 1000; 0 = only at the end). */
  progressIntervalMs?: number | undefined;
}

export interface RunOptions {
  /** Aborts the run: copies in flight are cancelled; the report is still returned (status "cancelled"). */
  signal?: AbortSignal | undefined;
  /** Graceful stop: no new copy starts; copies in flight finish (or end when `signal` aborts). */
  stop?: AbortSignal | undefined;
  /** Only this shard's repositories: `{ index, count }` or "i/n" (0-based i), like `ferry sync --shard`. */
  shard?: Shard | string | undefined;
  /** Keep only some source repositories (combined with the rules' filters and the shard). */
  repositoryFilter?: ((sourceRepository: string) => boolean) | undefined;
}

export interface VerifyCallOptions {
  signal?: AbortSignal | undefined;
  /** Called with each difference as soon as it is found (the report keeps the first 1000 per rule). */
  onDifference?: ((difference: Difference) => void) | undefined;
  shard?: Shard | string | undefined;
  repositoryFilter?: ((sourceRepository: string) => boolean) | undefined;
}

export interface CopyOptions {
  signal?: AbortSignal | undefined;
  /** false: leave an existing destination tag alone (default true). */
  override?: boolean | undefined;
}

/** Where a run comes from: `sync`, `plan` or `copy`, numbered per Ferry object. */
export interface RunInfo {
  id: number;
  kind: 'sync' | 'plan' | 'copy';
}

/** The engine's transfer events plus run-level ones. */
export interface FerryEvents extends TransferEvents {
  runStart: [run: RunInfo];
  /** Periodic (`progressIntervalMs`) and once at the end of each sync or copy. */
  progress: [snapshot: ProgressSnapshot, run: RunInfo];
  runEnd: [report: SyncReport, run: RunInfo];
  /** A run threw (invalid rule, registry unreachable): no report. */
  runError: [error: Error, run: RunInfo];
}

/** One item of `watch()`: the same events as `events`, as a tagged union. */
export type FerryEvent =
  | { type: 'runStart'; run: RunInfo }
  | { type: 'planned'; rule: string; artifacts: number }
  | { type: 'plannedBytes'; rule: string; bytes: number; artifacts: number }
  | { type: 'artifact'; rule: string; result: ArtifactResult }
  | { type: 'blob'; rule: string; outcome: keyof BlobCounts; size: number }
  | { type: 'progress'; run: RunInfo; snapshot: ProgressSnapshot }
  | { type: 'runEnd'; run: RunInfo; report: SyncReport }
  | { type: 'runError'; run: RunInfo; error: Error };

export interface WatchOptions {
  /** Ends the iteration when this settles (e.g. the promise of `sync()`), after the events before it. */
  until?: Promise<unknown> | undefined;
  signal?: AbortSignal | undefined;
}

export interface Ferry {
  /** The validated config (defaults applied, `${ENV}` expanded). */
  readonly config: FerryConfig;
  /** Typed events: transfer events from the engine, plus runStart / progress / runEnd / runError. */
  readonly events: EventEmitter<FerryEvents>;
  /**
   * Runs the named rules (default: every enabled rule) once and resolves with the report, like
   * `ferry sync --output json`. Artifact failures are in the report (status "partial"); an unknown
   * rule rejects with UnknownRuleError, an unreachable or refusing registry with PreflightError.
   */
  sync(rules?: string | string[], options?: RunOptions): Promise<SyncReport>;
  /** What `sync` would copy: the dry-run report (`rules[].plan`), like `ferry plan --output json`. Writes nothing. */
  plan(rules?: string | string[], options?: Pick<RunOptions, 'signal' | 'shard' | 'repositoryFilter'>): Promise<SyncReport>;
  /**
   * Copies one artifact (every platform of an index, its referrers): "registry/repo:tag" or
   * "registry/repo@sha256:…", where registry is a name from the config or a host (as `ferry copy`).
   * The destination tag defaults to the source's.
   */
  copy(source: string | ImageRef, destination: string | ImageRef, options?: CopyOptions): Promise<SyncReport>;
  /**
   * Compares the destination with the source for every artifact the rules select (default: every
   * enabled rule), like `ferry verify --output json`: tags at the same digest, children of indexes,
   * blobs, referrers. Reads only. Rejects like `sync` (UnknownRuleError, PreflightError).
   */
  verify(rules?: string | string[], options?: VerifyCallOptions): Promise<VerifyReport>;
  /** Changes the bandwidth cap for running and future copies: "200Mbps", "25MB/s", bytes/s, 0 = unlimited. Per rule when `rule` is given. */
  setBandwidth(bandwidth: string | number, rule?: string): void;
  /** The current run's counters (undefined when nothing ran yet). */
  progress(): ProgressSnapshot | undefined;
  /** The events as an async iterator; see WatchOptions for how it ends (close() ends it too). */
  watch(options?: WatchOptions): AsyncIterableIterator<FerryEvent>;
  /** Closes connections and the state; the object cannot be used afterwards. */
  close(): Promise<void>;
}

function toList(rules: string | string[] | undefined): string[] | undefined {
  return rules === undefined ? undefined : Array.isArray(rules) ? rules : [rules];
}

function combineFilters(shard: Shard | string | undefined, filter: ((repo: string) => boolean) | undefined): ((repo: string) => boolean) | undefined {
  const s = typeof shard === 'string' ? parseShard(shard, 'shard') : shard;
  if (s) parseShard(`${s.index}/${s.count}`, 'shard'); // validates an object too
  const byShard = s ? shardFilter(s) : undefined;
  if (byShard && filter) return (repo) => byShard(repo) && filter(repo);
  return byShard ?? filter;
}

/**
 * Creates a Ferry from a config object (validated with the same zod schema and error messages as a
 * config file: throws ConfigError) or from the path of a YAML config file.
 */
export function createFerry(config: FerryConfigInput | string, options: FerryOptions = {}): Ferry {
  const env = options.env ?? process.env;
  // The API runs no daemon: the `daemon` section's ${VARS} may be unset (the daemon's own loading needs them).
  const use = { unusedSections: ONE_SHOT_UNUSED_SECTIONS };
  const parsed = typeof config === 'string' ? loadConfig(config, env, use) : parseConfig(config, '<createFerry>', env, use);
  const logger = options.logger ?? (options.logLevel ? createLogger(options.logLevel) : silentLogger);
  const events = new EventEmitter<FerryEvents>();
  const engine = new Engine(parsed, { logger, stateDir: options.stateDir, events: events as unknown as EventEmitter<TransferEvents> });
  const intervalMs = options.progressIntervalMs ?? 1000;
  let runs = 0;
  let tracker: ProgressTracker | undefined;
  let closed = false;
  const watchers = new Set<() => void>();

  const assertOpen = () => {
    if (closed) throw new Error('this Ferry was closed');
  };

  /** Runs `fn` as one run: events, a progress tracker, and progress snapshots. */
  async function run<T extends SyncReport>(kind: RunInfo['kind'], ruleNames: string[], fn: () => Promise<T>): Promise<T> {
    assertOpen();
    // One tick first: a watch() started right after sync()/copy() returned sees runStart too.
    await Promise.resolve();
    const info: RunInfo = { id: ++runs, kind };
    const own = kind === 'plan' ? undefined : new ProgressTracker({ rules: ruleNames });
    if (own) tracker = own.attach(engine.events);
    const timer = own && intervalMs > 0 ? setInterval(() => events.emit('progress', own.snapshot(), info), intervalMs) : undefined;
    timer?.unref();
    events.emit('runStart', info);
    try {
      const report = await fn();
      if (own) events.emit('progress', own.snapshot(), info);
      events.emit('runEnd', report, info);
      return report;
    } catch (err) {
      events.emit('runError', err as Error, info);
      throw err;
    } finally {
      if (timer) clearInterval(timer);
      own?.detach();
    }
  }

  const ferry: Ferry = {
    config: parsed,
    events,

    async sync(rules, opts = {}) {
      const names = toList(rules);
      const selected = engine.selectRules(names);
      const repositoryFilter = combineFilters(opts.shard, opts.repositoryFilter);
      return run('sync', selected.map((r) => r.name), () => engine.sync({ rules: names, signal: opts.signal, stop: opts.stop, repositoryFilter }));
    },

    async plan(rules, opts = {}) {
      const names = toList(rules);
      engine.selectRules(names);
      const repositoryFilter = combineFilters(opts.shard, opts.repositoryFilter);
      return run('plan', [], () => engine.sync({ rules: names, dryRun: true, signal: opts.signal, repositoryFilter }));
    },

    async copy(source, destination, opts = {}) {
      assertOpen();
      const from = typeof source === 'string' ? resolveRef(source, parsed) : { ref: source, registries: parsed.registries };
      const to = typeof destination === 'string' ? resolveRef(destination, { registries: from.registries }) : { ref: destination, registries: from.registries };
      if (typeof destination === 'string' && typeof source === 'string' && !/[:@]/.test(destination.split('/').pop() ?? '')) {
        to.ref.reference = from.ref.reference;
      }
      for (const ref of [from.ref, to.ref]) {
        // Checked before the run starts (no runStart/runError for a bad argument).
        if (!to.registries[ref.registry]) throw new RefError(`unknown registry "${ref.registry}" (defined: ${Object.keys(parsed.registries).join(', ') || 'none'})`);
      }
      return run('copy', ['copy'], () => copyRef(engine, from.ref, to.ref, { registries: to.registries, override: opts.override, signal: opts.signal }));
    },

    async verify(rules, opts = {}) {
      assertOpen();
      const selected = engine.selectRules(toList(rules));
      return verifyRules(engine, selected, { signal: opts.signal, onDifference: opts.onDifference, repositoryFilter: combineFilters(opts.shard, opts.repositoryFilter) });
    },

    setBandwidth(bandwidth, rule) {
      const bytesPerSecond = parseBandwidth(bandwidth);
      if (bytesPerSecond === null) throw new RangeError(`expected a bandwidth such as 200Mbps, 25MB/s or bytes per second (0 = unlimited), got ${JSON.stringify(bandwidth)}`);
      if (rule === undefined) engine.setBandwidth(bytesPerSecond);
      else {
        engine.selectRules([rule]);
        engine.setRuleBandwidth(rule, bytesPerSecond);
      }
    },

    progress() {
      return tracker?.snapshot();
    },

    watch(opts = {}) {
      return watchEvents(events, opts, watchers);
    },

    async close() {
      if (closed) return;
      closed = true;
      for (const end of [...watchers]) end();
      await engine.close();
    },
  };
  return ferry;
}

function watchEvents(events: EventEmitter<FerryEvents>, opts: WatchOptions, watchers: Set<() => void>): AsyncIterableIterator<FerryEvent> {
  const queue: FerryEvent[] = [];
  let wake: (() => void) | undefined;
  let ended = false;
  const push = (e: FerryEvent) => {
    queue.push(e);
    wake?.();
  };
  const listeners: { [K in keyof FerryEvents]?: (...args: FerryEvents[K]) => void } = {
    runStart: (run) => push({ type: 'runStart', run }),
    planned: (rule, artifacts) => push({ type: 'planned', rule, artifacts }),
    plannedBytes: (rule, bytes, artifacts) => push({ type: 'plannedBytes', rule, bytes, artifacts }),
    artifact: (result, rule) => push({ type: 'artifact', rule, result }),
    blob: (outcome, rule, size) => push({ type: 'blob', rule, outcome, size }),
    progress: (snapshot, run) => push({ type: 'progress', run, snapshot }),
    runEnd: (report, run) => push({ type: 'runEnd', run, report }),
    runError: (error, run) => push({ type: 'runError', run, error }),
  };
  for (const [name, fn] of Object.entries(listeners)) events.on(name as never, fn as never);
  const end = () => {
    if (ended) return;
    ended = true;
    for (const [name, fn] of Object.entries(listeners)) events.off(name as never, fn as never);
    watchers.delete(end);
    opts.signal?.removeEventListener('abort', end);
    wake?.();
  };
  watchers.add(end);
  // Settling `until` ends the iteration after the events emitted before it (runEnd included).
  opts.until?.then(
    () => setImmediate(end),
    () => setImmediate(end),
  );
  if (opts.signal?.aborted) end();
  else opts.signal?.addEventListener('abort', end, { once: true });

  const iterator: AsyncIterableIterator<FerryEvent> = {
    async next() {
      for (;;) {
        const e = queue.shift();
        if (e) return { value: e, done: false };
        if (ended) return { value: undefined, done: true };
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    },
    async return() {
      end();
      queue.length = 0;
      return { value: undefined, done: true };
    },
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
  return iterator;
}

export type { PlanProblem, RulePlan, SourceArtifact, WorkItem } from './plan/types.js';

// The engine: one configured set of registries, one state, one blob queue and one bandwidth cap for
// the life of a process. The CLI runs one sync with it; the daemon keeps it and runs many.
import { EventEmitter } from 'node:events';
import PQueue from 'p-queue';
import type { Logger } from 'pino';
import type { FerryConfig, RegistryConfig, RuleConfig } from '../config/schema.js';
import { silentLogger } from '../log.js';
import { buildRulePlan } from '../plan/build.js';
import { compileFilters } from '../plan/filters.js';
import type { RulePlan, SourceArtifact, WorkItem } from '../plan/types.js';
import { createProvider, registryKey, staticCredentials } from '../providers/index.js';
import type { Provider } from '../providers/types.js';
import type { RequestObserver } from '../http/observe.js';
import { AuthError, UnreachableError } from '../registry/errors.js';
import { ArtifactCopier, type ManifestHooks } from '../transfer/artifact-copier.js';
import { BlobCopier, type UploadStrategy } from '../transfer/blob-copier.js';
import { ChartMuseumCopier } from '../transfer/charts.js';
import { ChunkedUpload, DEFAULT_RESUMABLE_CHUNK } from '../transfer/chunked.js';
import { ReferrersCopier, defaultManifestHooks } from '../transfer/referrers.js';
import { RuleStats, type TransferEvents } from '../transfer/stats.js';
import { TokenBucket } from '../transfer/throttle.js';
import { openState } from '../state/index.js';
import type { StateStore } from '../state/types.js';
import { type RuleReport, type SyncReport, completePlannedReport, completeRuleReport, startRuleReport, summarize } from './report.js';
import { inspectPlan } from './plan-details.js';
import { deleteGoneTags, deletionCandidates, recordPushes } from './delete-remote.js';

/** A registry could not be reached or refused the credentials before anything was copied (exit 3). */
export class PreflightError extends Error {
  override name = 'PreflightError';
  constructor(readonly failures: { registry: string; message: string }[]) {
    // Registry errors already start with "<registry>: " or "<registry>/<repository>: ": say it once.
    super(`registry check failed:\n${failures.map((f) => `  ${f.registry}: ${withoutPrefix(f.message, f.registry)}`).join('\n')}`);
  }
}

function withoutPrefix(message: string, registry: string): string {
  return message.startsWith(`${registry}: `) ? message.slice(registry.length + 2) : message;
}

/** A rule name given on the command line or API that the config does not define (exit 2). */
export class UnknownRuleError extends Error {
  override name = 'UnknownRuleError';
}

export interface EngineOptions {
  logger?: Logger | undefined;
  /** Called once per HTTP request sent to any registry (the CLI logs them at debug level). */
  onRequest?: RequestObserver | undefined;
  /** Overrides transfer.stateDir; `false` keeps the state in memory (tests, one-off copies). */
  stateDir?: string | false | undefined;
  /**
   * Dry runs: read the state of transfer.stateDir (so the plan can list deleteRemote deletions)
   * without writing anything there and without taking its lock.
   */
  readStateOnly?: boolean | undefined;
  events?: EventEmitter<TransferEvents> | undefined;
  uploadStrategy?: UploadStrategy | undefined;
  hooks?: ManifestHooks | undefined;
  /** A state shared with other engines (the daemon's engines across config reloads); not closed by close(). */
  state?: StateStore | undefined;
}

export interface SyncOptions {
  /** Rule names to run; all enabled rules when empty. */
  rules?: string[] | undefined;
  dryRun?: boolean | undefined;
  /** Aborts everything, in-flight copies included (their resumable uploads keep their checkpoints). */
  signal?: AbortSignal | undefined;
  /**
   * Graceful stop: once aborted, no new artifact or blob copy starts (nor listing); copies in flight go
   * on until they end or `signal` aborts (the CLI aborts it when transfer.gracePeriod has passed).
   */
  stop?: AbortSignal | undefined;
  /** Skip the reachability check (the daemon checks at start-up and on /readyz instead). */
  skipPreflight?: boolean | undefined;
  /** Use these artifacts instead of listing the source (webhook-triggered runs). */
  artifacts?: ((rule: RuleConfig) => SourceArtifact[] | AsyncIterable<SourceArtifact> | undefined) | undefined;
  /** Keep only some repositories (sharding). */
  repositoryFilter?: ((sourceRepository: string) => boolean) | undefined;
}

export class Engine {
  private readonly onRequest: RequestObserver | undefined;
  readonly config: FerryConfig;
  readonly logger: Logger;
  readonly events: EventEmitter<TransferEvents>;
  /** What Ferry remembers across runs: destinations' blobs and manifests, upload checkpoints, rule state. */
  readonly state: StateStore;
  /** The process-wide bandwidth cap; `setBandwidth` changes it for transfers in flight too. */
  readonly processBucket: TokenBucket;
  readonly blobs: BlobCopier;
  readonly artifacts: ArtifactCopier;
  /** ChartMuseum charts (work items with `chartMuseum`), converted to OCI charts. */
  readonly charts: ChartMuseumCopier;
  private readonly artifactQueue: PQueue;
  private readonly providers = new Map<string, Provider>();
  private readonly ruleBuckets = new Map<string, TokenBucket>();
  private readonly ownsState: boolean;

  constructor(config: FerryConfig, opts: EngineOptions = {}) {
    this.onRequest = opts.onRequest;
    this.config = config;
    this.logger = opts.logger ?? silentLogger;
    this.events = opts.events ?? new EventEmitter<TransferEvents>();
    const stateDir = opts.readStateOnly ? opts.stateDir || config.transfer.stateDir : opts.stateDir === false ? undefined : (opts.stateDir ?? config.transfer.stateDir);
    this.state = opts.state ?? openState({ stateDir, readOnly: !!opts.readStateOnly, logger: this.logger });
    this.ownsState = !opts.state;
    this.processBucket = new TokenBucket(config.transfer.bandwidth);
    this.blobs = new BlobCopier({
      concurrency: config.transfer.concurrency,
      retries: config.transfer.retries,
      state: this.state,
      journalMaxAgeMs: config.transfer.journalMaxAge * 1000,
      processBucket: this.processBucket,
      logger: this.logger,
      uploadStrategy:
        opts.uploadStrategy ??
        (config.transfer.chunkSize !== 0
          ? new ChunkedUpload({
              // Absent: only blobs of resumeThreshold and more are chunked (resumable), with a
              // fallback to one PUT at a registry that refuses PATCH. Set: every blob, no fallback.
              chunkSize: config.transfer.chunkSize ?? DEFAULT_RESUMABLE_CHUNK,
              onlyResumable: config.transfer.chunkSize === undefined,
              resumeThreshold: config.transfer.resumeThreshold,
              state: this.state,
              processBucket: this.processBucket,
              logger: this.logger,
            })
          : undefined),
      minBlobRate: config.transfer.minBlobRate,
      requestTimeoutMs: config.transfer.requestTimeout * 1000,
    });
    // Default hooks: platform filtering (rule `platforms`) and referrers (rule `copyReferrers`).
    const referrers = new ReferrersCopier({ state: this.state, logger: this.logger });
    this.artifacts = new ArtifactCopier(this.blobs, this.state, this.logger, opts.hooks ?? defaultManifestHooks({ referrers, logger: this.logger }));
    this.charts = new ChartMuseumCopier({
      blobs: this.blobs,
      state: this.state,
      logger: this.logger,
      chartUrl: (name, chart) => this.provider(name).chartArchiveUrl?.(chart),
      credentials: async (name) => (this.config.registries[name] ? staticCredentials(this.config.registries[name])() : undefined),
    });
    this.artifactQueue = new PQueue({ concurrency: config.transfer.artifactConcurrency });
  }

  provider(name: string): Provider {
    let p = this.providers.get(name);
    if (!p) {
      const cfg = this.config.registries[name];
      if (!cfg) throw new Error(`unknown registry "${name}"`);
      p = createProvider(name, cfg, {
        transfer: this.config.transfer,
        // No child binding: the registry layer names the registry in each record itself (a binding
        // too made pino write the "registry" key twice).
        logger: this.logger,
        onRetry: (registry) => this.events.emit('retry', registry),
        onRequest: this.onRequest,
      });
      this.providers.set(name, p);
    }
    return p;
  }

  /** Changes the process bandwidth cap (bytes/s, 0 = unlimited) for running and future transfers. */
  setBandwidth(bytesPerSecond: number): void {
    this.processBucket.setRate(bytesPerSecond);
  }

  /** Changes one rule's cap (bytes/s, 0 = none beyond the process cap) for running and future transfers. */
  setRuleBandwidth(rule: string, bytesPerSecond: number): void {
    const bucket = this.ruleBuckets.get(rule);
    if (bucket) bucket.setRate(bytesPerSecond);
    else this.ruleBuckets.set(rule, new TokenBucket(bytesPerSecond));
  }

  selectRules(names?: string[]): RuleConfig[] {
    if (!names?.length) return this.config.rules.filter((r) => r.enabled);
    return names.map((n) => {
      const rule = this.config.rules.find((r) => r.name === n);
      if (!rule) throw new UnknownRuleError(`unknown rule "${n}" (defined: ${this.config.rules.map((r) => r.name).join(', ') || 'none'})`);
      return rule;
    });
  }

  /** Pings every registry the rules use; throws PreflightError naming each that failed. */
  async preflight(rules: readonly Pick<RuleConfig, 'source' | 'destination'>[], destinations = true): Promise<void> {
    const names = new Set(rules.flatMap((r) => (destinations ? [r.source, r.destination] : [r.source])));
    const failures: { registry: string; message: string }[] = [];
    await Promise.all(
      [...names].map(async (name) => {
        try {
          await this.provider(name).client.ping();
        } catch (err) {
          if (err instanceof UnreachableError || err instanceof AuthError) failures.push({ registry: name, message: err.message });
          else failures.push({ registry: name, message: (err as Error).message });
        }
      }),
    );
    if (failures.length) throw new PreflightError(failures.sort((a, b) => a.registry.localeCompare(b.registry)));
  }

  /** Lists the source and builds the rule's plan (no writes). */
  async plan(rule: RuleConfig, opts: SyncOptions = {}): Promise<RulePlan> {
    const source = this.provider(rule.source);
    const destination = this.provider(rule.destination);
    const filters = compileFilters(rule.filters);
    const given = opts.artifacts?.(rule);
    const keepRepo = (repo: string) => filters.repositoryMatches(repo) && (opts.repositoryFilter?.(repo) ?? true);
    const artifacts =
      given ??
      source.listArtifacts({
        repositoryMayMatch: keepRepo,
        includeChartMuseum: !rule.filters.kinds || rule.filters.kinds.includes('chart'),
        signal: anySignal(opts.signal, opts.stop),
      });
    // A full listing (not a webhook's given artifacts) also tells which tags are gone from the source.
    const listed = given ? undefined : new Set<string>();
    const plan = await buildRulePlan(rule, filterRepos(artifacts, keepRepo, listed), {
      sourceRegistry: rule.source,
      destinationRegistry: rule.destination,
      validateDestination: (repo) => destination.validateDestination(repo),
    });
    if (listed) {
      plan.listed = listed;
      plan.deletions = (await deletionCandidates(this.state, rule.name, registryKey(rule.destination, destination.config), listed, keepRepo)).delete;
    }
    return plan;
  }

  /** Runs rules once: plan, then copy every planned artifact; one failure never stops the others. */
  async sync(opts: SyncOptions = {}): Promise<SyncReport> {
    const startedAt = new Date();
    const rules = this.selectRules(opts.rules);
    if (!opts.skipPreflight) await this.preflight(rules);
    const reports = await Promise.all(rules.map((rule) => this.runRule(rule, opts)));
    return summarize(reports, startedAt, !!opts.dryRun, !!opts.signal?.aborted || !!opts.stop?.aborted);
  }

  async runRule(rule: RuleConfig, opts: SyncOptions = {}): Promise<RuleReport> {
    const startedMs = Date.now();
    const stats = new RuleStats(rule.name, this.events);
    const report = startRuleReport(rule, stats);
    try {
      const plan = await this.plan(rule, opts);
      report.problems = plan.problems;
      report.artifacts.planned = plan.items.length;
      this.events.emit('planned', rule.name, plan.items.length);
      if (opts.dryRun) {
        const inspection = await inspectPlan(plan.items, this.provider(rule.source).client, this.provider(rule.destination).client, rule.override);
        completePlannedReport(report, rule, inspection, rule.deleteRemote ? plan.deletions : []);
      } else {
        await this.execute(rule, plan.items, stats, opts.signal, opts.stop);
        const cancelled = !!opts.signal?.aborted || !!opts.stop?.aborted;
        if (!cancelled) report.deleted = await this.recordAndDelete(rule, plan, stats);
        completeRuleReport(report, stats, { cancelled, startedMs });
      }
    } catch (err) {
      this.logger.error({ rule: rule.name, err: (err as Error).message }, 'rule failed');
      report.status = 'failed';
      report.error = (err as Error).message;
    }
    report.durationMs = Date.now() - startedMs;
    return report;
  }

  /** Remembers what the rule pushed per source tag, then applies deleteRemote (delete-remote.ts). */
  private async recordAndDelete(rule: RuleConfig, plan: RulePlan, stats: RuleStats): Promise<RuleReport['deleted']> {
    const destination = this.provider(rule.destination);
    const destinationKey = registryKey(rule.destination, destination.config);
    await recordPushes(this.state, rule.name, destinationKey, stats.artifacts);
    const deleted = await deleteGoneTags(rule, plan, this.state, destinationKey, destination, this.logger);
    return deleted;
  }

  private async execute(rule: RuleConfig, items: WorkItem[], stats: RuleStats, signal?: AbortSignal, stop?: AbortSignal): Promise<void> {
    const source = this.provider(rule.source);
    const destination = this.provider(rule.destination);
    const destinationKey = registryKey(rule.destination, destination.config);
    const filters = compileFilters(rule.filters);
    const ruleBucket = this.ruleBucket(rule);
    await Promise.all(
      items.map((item) =>
        // No `signal` option to p-queue (it would reject at once while the copy runs on): a queued
        // artifact checks stop/abort when its turn comes and is then left out of the report.
        this.artifactQueue.add(async () => {
          if (signal?.aborted || stop?.aborted) return;
          await (item.chartMuseum ? this.charts : this.artifacts).copy({
            item,
            source: source.client,
            destination: destination.client,
            destinationKey,
            override: rule.override,
            stats,
            ruleBucket,
            signal,
            stop,
            kindAllowed: (kind) => filters.kindAllowed(kind),
            prepareDestination: (repo) => destination.prepareDestination(repo),
            platforms: rule.platforms,
            copyReferrers: rule.copyReferrers,
            ...conversionOptions(destination.config),
          });
        }),
      ),
    );
  }

  /** Every rule gets a bucket (rate 0 = no rule cap), so setRuleBandwidth reaches transfers already running. */
  private ruleBucket(rule: RuleConfig): TokenBucket {
    let bucket = this.ruleBuckets.get(rule.name);
    if (!bucket) this.ruleBuckets.set(rule.name, (bucket = new TokenBucket(rule.bandwidth ?? 0)));
    return bucket;
  }

  async close(): Promise<void> {
    try {
      await Promise.all([...this.providers.values()].map((p) => p.close()));
    } finally {
      this.providers.clear();
      // Even when a connection did not close cleanly: the state's lock must go with the process.
      if (this.ownsState) await this.state.close();
    }
  }
}

/** swr.convertToDocker, and the hint for SWR refusing OCI manifests when it is off. */
export function conversionOptions(config: RegistryConfig): { convertToDocker: boolean; ociRejectedHint?: string } {
  if (config.kind !== 'swr') return { convertToDocker: false };
  if (config.swr?.convertToDocker) return { convertToDocker: true };
  return { convertToDocker: false, ociRejectedHint: 'SWR may refuse OCI-format manifests: set swr.convertToDocker: true on this registry to convert them to Docker schema 2 (digests change)' };
}

async function* filterRepos(
  artifacts: SourceArtifact[] | AsyncIterable<SourceArtifact>,
  keep: (repo: string) => boolean,
  listed?: Set<string>,
): AsyncIterable<SourceArtifact> {
  for await (const a of artifacts) {
    if (!keep(a.repository)) continue;
    for (const tag of a.tags) listed?.add(`${a.repository}:${tag}`);
    yield a;
  }
}

function anySignal(...signals: (AbortSignal | undefined)[]): AbortSignal | undefined {
  const given = signals.filter((s): s is AbortSignal => s !== undefined);
  return given.length <= 1 ? given[0] : AbortSignal.any(given);
}

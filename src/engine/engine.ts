// The engine: one configured set of registries, one state, one blob queue and one bandwidth cap for
// the life of a process. The CLI runs one sync with it; the daemon keeps it and runs many.
import { EventEmitter } from 'node:events';
import PQueue from 'p-queue';
import type { Logger } from 'pino';
import type { FerryConfig, RegistryConfig, RuleConfig } from '../config/schema.js';
import { silentLogger } from '../log.js';
import { type RepositoryPlan, RulePlanner, findCollisions, groupByRepository, mappingIsInjective } from '../plan/build.js';
import { type CompiledFilters, compileFilters } from '../plan/filters.js';
import type { PlanProblem, RulePlan, SourceArtifact, WorkItem } from '../plan/types.js';
import { createProvider, registryKey, staticCredentials } from '../providers/index.js';
import type { Provider } from '../providers/types.js';
import { LimitShare } from '../http/limits.js';
import { RequestCounter, type RequestObserver } from '../http/observe.js';
import { AuthError, UnreachableError } from '../registry/errors.js';
import { ArtifactCopier, type DestinationTags, type ManifestHooks } from '../transfer/artifact-copier.js';
import { BlobCopier, type UploadStrategy } from '../transfer/blob-copier.js';
import { ChartMuseumCopier } from '../transfer/charts.js';
import { ChunkedUpload, DEFAULT_RESUMABLE_CHUNK } from '../transfer/chunked.js';
import { ReferrersCopier, defaultManifestHooks } from '../transfer/referrers.js';
import { type ArtifactResult, RuleStats, type TransferEvents } from '../transfer/stats.js';
import { TokenBucket } from '../transfer/throttle.js';
import { openState } from '../state/index.js';
import type { RunMembership } from '../state/coordination.js';
import type { StateStore } from '../state/types.js';
import { CooperativeRule, type OpenUnit, names, namesOf, runKey, unitCollisions, workerInfo } from './cooperative.js';
import { ArtifactLog } from './artifact-log.js';
import { CopyPipeline } from './copy-pipeline.js';
import { type RuleReport, type SyncReport, completePlannedReport, completeRuleReport, startRuleReport, summarize } from './report.js';
import { PlanInspector } from './plan-details.js';
import { GoneTags, deleteGoneTags, recordPushes, sharedManifestCheck, vanishedRepositoryCandidates } from './delete-remote.js';
import { PushOrder } from './push-order.js';

/** Plan problems a report lists (the count covers them all). */
export const PROBLEMS_KEPT = 1000;

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
  /** Keep only some repositories (sharding). With a repository filter, processes never cooperate (shards are the other way). */
  repositoryFilter?: ((sourceRepository: string) => boolean) | undefined;
}

/** What planRepositories takes from a cooperating worker: the leased unit's repositories and collisions. */
interface UnitPlanOptions extends SyncOptions {
  repositories?: AsyncIterable<string> | undefined;
  collisions?: Map<string, string[]> | undefined;
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
  /** Where run logs go (undefined: in memory only, e.g. `ferry plan` and tests). */
  private readonly stateDir: string | undefined;
  private readonly filterCache = new Map<string, CompiledFilters>();
  /** Every request of this engine's providers, per registry and kind (one counter for all of them). */
  private readonly requests = new RequestCounter();
  /** Tag pushes per destination repository in planned order, whatever artifactConcurrency (push-order.ts). */
  private readonly pushOrder = new PushOrder();
  /**
   * This process's part of every limit when it cooperates with other workers (issue 12): the request
   * layer divides `limits` by it, and the bandwidth caps below follow it.
   */
  readonly limitShare = new LimitShare();
  /** The process cap as configured or set through the API (before the share). */
  private bandwidth: number;
  /** Rule caps as configured or set (before the share). */
  private readonly ruleRates = new Map<string, number>();

  constructor(config: FerryConfig, opts: EngineOptions = {}) {
    this.onRequest = opts.onRequest;
    this.config = config;
    this.logger = opts.logger ?? silentLogger;
    this.events = opts.events ?? new EventEmitter<TransferEvents>();
    const stateDir = opts.readStateOnly ? opts.stateDir || config.transfer.stateDir : opts.stateDir === false ? undefined : (opts.stateDir ?? config.transfer.stateDir);
    const url = opts.stateDir === false && !opts.readStateOnly ? undefined : config.state?.url;
    this.state = opts.state ?? openState({ stateDir, url, readOnly: !!opts.readStateOnly, logger: this.logger });
    this.ownsState = !opts.state;
    this.stateDir = opts.readStateOnly || opts.stateDir === false ? undefined : (opts.stateDir ?? config.transfer.stateDir);
    this.bandwidth = config.transfer.bandwidth;
    this.processBucket = new TokenBucket(config.transfer.bandwidth);
    this.limitShare.onChange(() => this.applyShare());
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
        requests: this.requests,
        onRequest: this.onRequest,
        limitShare: this.limitShare,
      });
      this.providers.set(name, p);
    }
    return p;
  }

  /** Changes the process bandwidth cap (bytes/s, 0 = unlimited) for running and future transfers. */
  setBandwidth(bytesPerSecond: number): void {
    if (!Number.isFinite(bytesPerSecond) || bytesPerSecond < 0) throw new RangeError(`bandwidth must be a non-negative number of bytes per second, got ${bytesPerSecond}`);
    this.bandwidth = bytesPerSecond;
    this.processBucket.setRate(this.limitShare.part(bytesPerSecond));
  }

  /** Changes one rule's cap (bytes/s, 0 = none beyond the process cap) for running and future transfers. */
  setRuleBandwidth(rule: string, bytesPerSecond: number): void {
    this.ruleRates.set(rule, bytesPerSecond);
    const bucket = this.ruleBuckets.get(rule);
    if (bucket) bucket.setRate(this.limitShare.part(bytesPerSecond));
    else this.ruleBuckets.set(rule, new TokenBucket(this.limitShare.part(bytesPerSecond)));
  }

  /** The live workers changed: every cap is this process's share of the configured figure again. */
  private applyShare(): void {
    this.processBucket.setRate(this.limitShare.part(this.bandwidth));
    for (const [rule, bucket] of this.ruleBuckets) {
      const configured = this.ruleRates.get(rule) ?? this.config.rules.find((r) => r.name === rule)?.bandwidth ?? 0;
      bucket.setRate(this.limitShare.part(configured));
    }
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

  /**
   * Lists the source and streams the rule's plan, one source repository at a time (no writes): the
   * listing is read only as fast as the consumer takes repositories. A last entry with
   * `sourceRepository: '*'` carries problems about the rule as a whole.
   */
  async *planRepositories(rule: RuleConfig, opts: UnitPlanOptions = {}): AsyncGenerator<RepositoryPlan> {
    const source = this.provider(rule.source);
    const destination = this.provider(rule.destination);
    const filters = compileFilters(rule.filters);
    const keepRepo = (repo: string) => filters.repositoryMatches(repo) && (opts.repositoryFilter?.(repo) ?? true);
    const includeChartMuseum = !rule.filters.kinds || rule.filters.kinds.includes('chart');
    const signal = anySignal(opts.signal, opts.stop);
    const given = opts.artifacts?.(rule);
    const givenList = Array.isArray(given) ? groupByRepository(given.filter((a) => keepRepo(a.repository))) : undefined;
    let collisions: Map<string, string[]> | undefined = opts.collisions;
    if (!mappingIsInjective(rule) && !opts.repositories) {
      // Names only: the listing asks whether each repository may match before listing its tags.
      const names: string[] = [];
      if (givenList) names.push(...new Set(givenList.map((a) => a.repository)));
      else if (!given) {
        for await (const _ of source.listArtifacts({ repositoryMayMatch: (repo) => (keepRepo(repo) && names.push(repo), false), includeChartMuseum, signal })) {
          // nothing is listed: every repository was declined
        }
      }
      if (names.length) collisions = await findCollisions(rule, names);
    }
    const planner = new RulePlanner(rule, {
      sourceRegistry: rule.source,
      destinationRegistry: rule.destination,
      validateDestination: (repo) => destination.validateDestination(repo),
      collisions,
    });
    // A repository the listing could not read is that repository's problem (#14), reported with the plan.
    const unreadable: PlanProblem[] = [];
    const onRepositoryProblem = (repository: string, message: string) => unreadable.push({ rule: rule.name, sourceRepository: repository, message });
    const artifacts = givenList ?? given ?? source.listArtifacts({ repositoryMayMatch: keepRepo, includeChartMuseum, signal, onRepositoryProblem, repositories: opts.repositories });
    const drain = (): RepositoryPlan => ({ sourceRepository: unreadable[0]!.sourceRepository, items: [], problems: unreadable.splice(0), listedTags: new Set(), unreadable: true });
    for await (const repo of planner.repositories(filterRepos(artifacts, keepRepo))) {
      yield repo;
      if (unreadable.length) yield drain();
    }
    if (unreadable.length) yield drain();
    const ruleProblems = planner.ruleProblems();
    if (ruleProblems.length) yield { sourceRepository: '*', items: [], problems: ruleProblems, listedTags: new Set() };
  }

  /** The whole plan of a rule at once (webhook events, API and tests; a full listing holds every item). */
  async plan(rule: RuleConfig, opts: SyncOptions = {}): Promise<RulePlan> {
    const plan: RulePlan = { rule: rule.name, items: [], problems: [], deletions: [] };
    const full = !opts.artifacts?.(rule);
    const gone = full ? this.goneTags(rule, opts) : undefined;
    const listed = full ? new Set<string>() : undefined;
    for await (const repo of this.planRepositories(rule, opts)) {
      plan.items.push(...repo.items);
      plan.problems.push(...repo.problems);
      if (!listed || repo.sourceRepository === '*') continue;
      if (repo.unreadable) for (const p of repo.problems) gone!.unreadable(p.sourceRepository);
      else {
        listed.add(repo.sourceRepository);
        await gone!.repository(repo.sourceRepository, repo.listedTags);
      }
    }
    if (listed) {
      plan.listedRepositories = listed;
      plan.deletions = (await gone!.finish()).delete;
    }
    return plan;
  }

  /** deleteRemote's bookkeeping for one run of `rule` (a complete listing's deletion candidates). */
  private goneTags(rule: RuleConfig, opts: SyncOptions): GoneTags {
    const destination = this.provider(rule.destination);
    const filters = this.compiledFilters(rule);
    const inScope = (repo: string) => filters.repositoryMatches(repo) && (opts.repositoryFilter?.(repo) ?? true);
    return new GoneTags(this.state, rule.name, registryKey(rule.destination, destination.config), inScope);
  }

  /** Runs rules once: plan, then copy every planned artifact; one failure never stops the others. */
  async sync(opts: SyncOptions = {}): Promise<SyncReport> {
    const startedAt = new Date();
    const rules = this.selectRules(opts.rules);
    if (!opts.skipPreflight) await this.preflight(rules);
    const membership = await this.joinRun(rules, opts);
    try {
      const reports = await Promise.all(rules.map((rule) => this.runRule(rule, opts, membership)));
      return summarize(reports, startedAt, !!opts.dryRun, !!opts.signal?.aborted || !!opts.stop?.aborted);
    } finally {
      if (membership) {
        this.blobs.setClaims(undefined);
        this.limitShare.set(1);
        await membership.leave().catch((err: unknown) => this.logger.warn({ err: (err as Error).message }, 'could not leave the shared run cleanly (the others see this worker gone after state.leaseTimeout)'));
      }
    }
  }

  /**
   * With a state other processes share (PostgreSQL), a full sync joins their run: units of work are
   * leased, each blob's first copy is claimed, and limits are shared by the live workers. Dry runs,
   * webhook runs (given artifacts) and shards (a repository filter) run on their own.
   */
  private async joinRun(rules: RuleConfig[], opts: SyncOptions): Promise<RunMembership | undefined> {
    if (opts.dryRun || opts.artifacts || opts.repositoryFilter || this.config.state?.cooperate === false) return undefined;
    const coordination = this.state.coordination?.({ leaseTimeoutMs: (this.config.state?.leaseTimeout ?? 30) * 1000, logger: this.logger });
    if (!coordination) return undefined;
    const membership = await coordination.join(runKey(this.config, rules), workerInfo(rules));
    this.logger.info({ run: membership.runId, worker: membership.workerId, workers: membership.workers }, 'joined the shared run');
    // Shared by the workers holding leases (a worker waiting for the others to finish takes no share).
    this.limitShare.set(membership.sharing);
    membership.onWorkers((n, sharing) => {
      this.logger.info({ run: membership.runId, workers: n, sharing }, 'live workers changed; limits and bandwidth shared again');
      this.limitShare.set(sharing);
    });
    this.blobs.setClaims(membership);
    membership.lost.catch((err: unknown) => this.logger.error({ run: membership.runId, err: (err as Error).message }, 'this worker lost the state database: the others take over its work after state.leaseTimeout'));
    return membership;
  }

  /**
   * One rule's run as a bounded pipeline: listing → filters → names → copies, one repository at a
   * time, at most a few artifacts per copy slot queued ahead; the report keeps totals and a capped
   * sample, the artifact log (state directory) every result.
   */
  async runRule(rule: RuleConfig, opts: SyncOptions = {}, membership?: RunMembership): Promise<RuleReport> {
    const started = Date.now();
    const dryRun = !!opts.dryRun;
    const full = !opts.artifacts?.(rule);
    const coop = membership && !dryRun && full ? this.cooperativeRule(rule, membership, opts) : undefined;
    const destination = this.provider(rule.destination);
    const destinationKey = registryKey(rule.destination, destination.config);
    const log = dryRun ? undefined : ArtifactLog.open(this.stateDir, rule.name, new Date(started));
    // What the rule pushed per source tag (deleteRemote), recorded as results come in.
    // What the rule pushed per source tag (deleteRemote), written to the state in batches as results come.
    const pushed: ArtifactResult[] = [];
    let recording: Promise<void> = Promise.resolve();
    const recordPushed = (): Promise<void> => {
      const batch = pushed.splice(0);
      if (batch.length) recording = recording.then(() => recordPushes(this.state, rule.name, destinationKey, batch));
      return recording;
    };
    const stats = new RuleStats(rule.name, this.events, (result) => {
      log?.write(result);
      coop?.result(result);
      if (dryRun || result.status !== 'copied') return;
      pushed.push(result);
      if (pushed.length >= 256) recordPushed().catch(() => undefined);
    });
    const report = startRuleReport(rule, stats);
    const requestsBefore = this.requestCounts(rule);
    let problemCount = 0;
    const addProblems = (problems: PlanProblem[]) => {
      problemCount += problems.length;
      for (const p of problems) {
        if (report.problems.length < PROBLEMS_KEPT) report.problems.push(p);
        else report.problemsOmitted = (report.problemsOmitted ?? 0) + 1;
      }
    };
    if (coop) coop.blobCounts = () => stats.blobs;
    // deleteRemote: each listed repository's candidates, from the rule state as it is planned; the
    // repositories gone altogether once the listing is complete.
    const gone = full && rule.deleteRemote && !coop ? this.goneTags(rule, opts) : undefined;
    if (coop) coop.beforeComplete = () => recordPushed();
    const inspector = dryRun ? new PlanInspector(this.provider(rule.source).client, destination.client, rule.override, this.config.transfer.artifactConcurrency) : undefined;
    const copies = dryRun ? undefined : new CopyPipeline(2 * this.config.transfer.artifactConcurrency);
    /** One repository's plan: its problems reported, its artifacts inspected (dry run) or queued for copy. */
    const take = async (repo: RepositoryPlan, unit?: OpenUnit): Promise<'stop' | void> => {
        addProblems(repo.problems);
        if (gone && repo.sourceRepository !== '*') {
          if (repo.unreadable) for (const p of repo.problems) gone.unreadable(p.sourceRepository);
          else await gone.repository(repo.sourceRepository, repo.listedTags);
        }
        if (!repo.items.length) return;
        report.artifacts.planned += repo.items.length;
        this.events.emit('planned', rule.name, report.artifacts.planned);
        // Sizes the listing gave (Harbor) count at once; the copier adds the others as it reads their manifests.
        const sized = repo.items.filter((i) => i.size !== undefined);
        stats.planBytes(sized.reduce((n, i) => n + i.size!, 0), sized.length);
        // The destination repository's tag list, once per repository as a sync learns it: a plan into
        // an empty repository then makes no HEADs (the sync would make none either).
        if (inspector) await inspector.add(repo.items, repo.destinationRepository ? this.destinationTags(rule, repo.destinationRepository, opts.signal) : undefined);
        else if (copies) {
          if (opts.signal?.aborted || opts.stop?.aborted) return 'stop';
          const known = this.destinationTags(rule, repo.destinationRepository!, opts.signal);
          const sourceTags = full && this.provider(rule.source).config.kind === 'registry' ? repo.listedTags : undefined;
          unit?.addPlan(repo);
          for (const item of repo.items) {
            await copies.add(() => this.copyItem(rule, item, stats, opts, known, sourceTags).finally(() => unit?.settled()));
          }
        }
    };
    try {
      if (coop) {
        // Units leased from the shared run, one at a time; the copies of earlier units go on meanwhile.
        for (let lease = await coop.next(); lease; lease = await coop.next()) {
          if (opts.signal?.aborted || opts.stop?.aborted) break;
          const unit = coop.begin(lease);
          const plans = this.planRepositories(rule, { ...opts, repositories: names(lease.sources), collisions: await unitCollisions(rule, lease) });
          // deleteRemote: the unit's candidates go to the database with it; the finisher decides.
          const unitGone = rule.deleteRemote ? this.goneTags(rule, opts) : undefined;
          const seen = new Set<string>();
          let stopped = false;
          for await (const repo of plans) {
            if (repo.items.length === 0) unit.addProblems(repo.problems);
            seen.add(repo.sourceRepository);
            if (unitGone && repo.sourceRepository !== '*') {
              if (repo.unreadable) for (const p of repo.problems) unitGone.unreadable(p.sourceRepository);
              else await unitGone.repository(repo.sourceRepository, repo.listedTags);
            }
            if ((await take(repo, unit)) === 'stop') {
              stopped = true;
              break;
            }
          }
          if (stopped) break;
          if (unitGone) {
            // A source of the unit the listing returned nothing for has no tag left: all of its pushes are gone.
            for (const source of lease.sources) if (!seen.has(source)) await unitGone.repository(source, new Set());
            unit.addDeletions(unitGone.found());
          }
          unit.planDone();
        }
      } else {
        for await (const repo of this.planRepositories(rule, opts)) if ((await take(repo)) === 'stop') break;
      }
      if (!report.artifacts.planned) this.events.emit('planned', rule.name, 0);
      if (inspector) {
        const inspection = await inspector.done();
        completePlannedReport(report, rule, inspection, gone ? (await gone.finish()).delete : []);
      } else {
        await copies!.done();
        const cancelled = !!opts.signal?.aborted || !!opts.stop?.aborted;
        if (cancelled) coop?.cancel();
        await coop?.settle();
        await recordPushed();
        if (!cancelled && gone) report.deleted = await deleteGoneTags(rule, (await gone.finish()).delete, this.state, destinationKey, destination, this.logger);
        if (!cancelled && coop && rule.deleteRemote) {
          const inScope = (repo: string) => this.compiledFilters(rule).repositoryMatches(repo);
          const candidates = await coop.finisherCandidates((wasListed) => vanishedRepositoryCandidates(this.state, rule.name, destinationKey, wasListed, inScope));
          if (candidates) {
            const decision = await sharedManifestCheck(this.state, rule.name, destinationKey, candidates);
            report.deleted = await deleteGoneTags(rule, decision.delete, this.state, destinationKey, destination, this.logger);
          }
        }
        completeRuleReport(report, stats, { cancelled, startedMs: started, problems: problemCount });
        if (coop && !cancelled) await coop.wholeRunReport(report, PROBLEMS_KEPT);
      }
    } catch (err) {
      coop?.cancel();
      await copies?.done().catch(() => undefined);
      await coop?.settle().catch(() => undefined);
      this.logger.error({ rule: rule.name, err: (err as Error).message }, 'rule failed');
      report.status = 'failed';
      report.error = (err as Error).message;
    }
    if (log) {
      const failed = await log.close();
      report.artifactLog = log.file;
      if (failed) this.logger.warn({ rule: rule.name, file: log.file, err: failed.message }, 'the artifact log could not be written completely');
    }
    const requests = this.requestCounts(rule, requestsBefore);
    if (requests) report.requests = requests;
    report.durationMs = Date.now() - started;
    return report;
  }

  private cooperativeRule(rule: RuleConfig, membership: RunMembership, opts: SyncOptions): CooperativeRule {
    const source = this.provider(rule.source);
    const filters = this.compiledFilters(rule);
    const includeChartMuseum = !rule.filters.kinds || rule.filters.kinds.includes('chart');
    const signal = anySignal(opts.signal, opts.stop);
    return new CooperativeRule({
      rule,
      membership,
      logger: this.logger,
      signal,
      // Names only: the providers announce each repository to repositoryMayMatch, which declines it.
      enumerate: () =>
        namesOf(async (push) => {
          const declineAll = (repo: string) => {
            if (filters.repositoryMatches(repo)) push(repo);
            return false;
          };
          for await (const _ of source.listArtifacts({ repositoryMayMatch: declineAll, includeChartMuseum, ...(signal ? { signal } : {}) })) {
            // nothing is listed: every repository was declined
          }
        }),
    });
  }

  /**
   * Requests each registry of the rule received, by kind: with `since`, the difference (this run).
   * Undefined when the request layer does not count.
   */
  private requestCounts(rule: RuleConfig, since?: Record<string, Record<string, number>>): Record<string, Record<string, number>> | undefined {
    // One counter for every provider of the engine (the request layer counts each attempt by registry).
    const all = this.requests.counts();
    const now: Record<string, Record<string, number>> = {};
    for (const name of new Set([rule.source, rule.destination])) now[name] = { ...(all[name] ?? {}) };
    if (!since) return now;
    const out: Record<string, Record<string, number>> = {};
    for (const [registry, kinds] of Object.entries(now)) {
      const before = since[registry] ?? {};
      const diff: Record<string, number> = {};
      for (const [kind, n] of Object.entries(kinds)) if (n - (before[kind] ?? 0) > 0) diff[kind] = n - (before[kind] ?? 0);
      if (Object.keys(diff).length) out[registry] = diff;
    }
    return out;
  }

  /**
   * What the destination repository holds, asked once per repository and run: the product's bulk
   * inventory (tags with digests) where it has one, and the registry's tag list when a tag is not in
   * it; so a tag the repository lacks needs no HEAD, an empty repository no blob HEADs, and a rerun
   * against an inventory no request per tag. Failures fall back to a HEAD per tag.
   */
  private destinationTags(rule: RuleConfig, repository: string, signal?: AbortSignal): Promise<DestinationTags | undefined> {
    const provider = this.provider(rule.destination);
    let listed: Promise<ReadonlySet<string> | undefined> | undefined;
    const tags = (): Promise<ReadonlySet<string> | undefined> =>
      (listed ??= provider.client.listTags(repository).then(
        (list) => new Set(list),
        (err: unknown) => {
          if (signal?.aborted) throw err;
          this.logger.debug({ rule: rule.name, repository, err: (err as Error).message }, 'destination tags not listed; checking each tag');
          return undefined;
        },
      ));
    const known = (async (): Promise<DestinationTags | undefined> => {
      if (!provider.listTagInventory) return { tags };
      try {
        const inventory = new Map<string, string>();
        for await (const e of provider.listTagInventory(repository, signal ? { signal } : undefined)) inventory.set(e.tag, e.digest);
        return { inventory, tags };
      } catch (err) {
        if (signal?.aborted) throw err;
        this.logger.debug({ rule: rule.name, repository, err: (err as Error).message }, 'destination inventory not listed; using the tag list');
        return { tags };
      }
    })();
    known.catch(() => undefined);
    return known;
  }

  private async copyItem(rule: RuleConfig, item: WorkItem, stats: RuleStats, opts: SyncOptions, known: Promise<DestinationTags | undefined>, sourceTags: ReadonlySet<string> | undefined): Promise<void> {
    const { signal, stop } = opts;
    if (signal?.aborted || stop?.aborted) return;
    const source = this.provider(rule.source);
    const destination = this.provider(rule.destination);
    const filters = this.compiledFilters(rule);
    // Taken now, in planned order (copyItem is called in that order), released however the copy ends.
    const destinationKey = registryKey(rule.destination, destination.config);
    const pushTurn = this.pushOrder.enter(`${destinationKey}\n${item.destinationRepository}`);
    await this.artifactQueue.add(async () => {
      // No `signal` option to p-queue (it would reject at once while the copy runs on): a queued
      // artifact checks stop/abort when its turn comes and is then left out of the report.
      if (signal?.aborted || stop?.aborted) return;
      await (item.chartMuseum ? this.charts : this.artifacts).copy({
        pushTurn,
        item,
        source: source.client,
        destination: destination.client,
        destinationKey,
        override: rule.override,
        stats,
        ruleBucket: this.ruleBucket(rule),
        signal,
        stop,
        kindAllowed: (kind) => filters.kindAllowed(kind),
        prepareDestination: (repo) => destination.prepareDestination(repo),
        platforms: rule.platforms,
        copyReferrers: rule.copyReferrers,
        destinationTags: known,
        sourceTags,
        ...conversionOptions(destination.config),
      });
    }).finally(() => pushTurn.done());
  }

  /** Forgets what this process learnt about destinations (the daemon calls it at the start of each run). */
  resetRunCaches(): void {
    this.blobs.resetCaches();
    for (const p of this.providers.values()) p.client.clearTokens();
  }

  private compiledFilters(rule: RuleConfig): CompiledFilters {
    let f = this.filterCache.get(rule.name);
    if (!f) this.filterCache.set(rule.name, (f = compileFilters(rule.filters)));
    return f;
  }

  /** Every rule gets a bucket (rate 0 = no rule cap), so setRuleBandwidth reaches transfers already running. */
  private ruleBucket(rule: RuleConfig): TokenBucket {
    let bucket = this.ruleBuckets.get(rule.name);
    if (!bucket) this.ruleBuckets.set(rule.name, (bucket = new TokenBucket(this.limitShare.part(rule.bandwidth ?? 0))));
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

async function* filterRepos(artifacts: SourceArtifact[] | AsyncIterable<SourceArtifact>, keep: (repo: string) => boolean): AsyncIterable<SourceArtifact> {
  for await (const a of artifacts) if (keep(a.repository)) yield a;
}

function anySignal(...signals: (AbortSignal | undefined)[]): AbortSignal | undefined {
  const given = signals.filter((s): s is AbortSignal => s !== undefined);
  return given.length <= 1 ? given[0] : AbortSignal.any(given);
}

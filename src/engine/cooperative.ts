// A rule's run shared by every `ferry sync` on one PostgreSQL state (issue 12). The engine asks this
// module for units of work (source repositories, leased in the database) instead of listing the whole
// source; one worker, the lister, enumerates the repositories into the database while every worker
// (the lister too) leases, plans and copies them. A unit is done when every artifact planned from it
// has a result; its totals and failures go to the database, so any worker can report the whole run
// and exit 0 only when nothing failed anywhere.
//
// Why units are repositories: a repository's tags are what filters (latest N, semver) need, and a
// collision (two sources flattened into one destination) is one unit, so one worker decides it.
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { FerryConfig, RuleConfig } from '../config/schema.js';
import { findCollisions, mappingIsInjective, type RepositoryPlan } from '../plan/build.js';
import type { PlanProblem } from '../plan/types.js';
import type { LeasedUnit, RunMembership, RunRecord, Unit, UnitTotals } from '../state/coordination.js';
import { emptyTotals } from '../state/coordination.js';
import type { ArtifactResult, BlobCounts } from '../transfer/stats.js';
import type { DeletionCandidate } from './delete-remote.js';
import type { RuleReport } from './report.js';

/** Units the lister writes per statement. */
const UNIT_BATCH = 200;
/** Failures a unit keeps for the run's report (the artifact log of its worker has them all). */
const RECORDS_PER_UNIT = 200;

/**
 * What makes two processes the same run: the rules they were asked to run and where those read and
 * write (kind and URL of each registry; never a credential). Same config, same rules → same key.
 */
export function runKey(config: FerryConfig, rules: readonly RuleConfig[]): string {
  const names = [...new Set(rules.flatMap((r) => [r.source, r.destination]))].sort();
  const shape = {
    rules: [...rules].sort((a, b) => a.name.localeCompare(b.name)),
    registries: names.map((n) => ({ name: n, kind: config.registries[n]?.kind, url: config.registries[n]?.url })),
  };
  return createHash('sha256').update(JSON.stringify(shape)).digest('hex').slice(0, 32);
}

export function workerInfo(rules: readonly RuleConfig[]): { rules: string[]; host: string; pid: number } {
  return { rules: rules.map((r) => r.name), host: hostname(), pid: process.pid };
}

export interface CooperativeRuleOptions {
  rule: RuleConfig;
  membership: RunMembership;
  logger: Logger;
  /** Repository names of the source that pass the rule's filters (the lister enumerates them). */
  enumerate: () => AsyncIterable<string>;
  /** How long to wait between polls when no unit is free (ms). */
  pollMs?: number | undefined;
  signal?: AbortSignal | undefined;
}

/** One open unit: its plan is being read or its artifacts copied. */
export class OpenUnit {
  readonly totals: UnitTotals = emptyTotals();
  readonly records: RunRecord[] = [];
  private keptCount = 0;
  private planned = false;
  private outstanding = 0;
  private resolveDone!: () => void;
  readonly done = new Promise<void>((resolve) => (this.resolveDone = resolve));

  constructor(readonly lease: LeasedUnit) {}

  addPlan(repo: RepositoryPlan): void {
    this.totals.planned += repo.items.length;
    this.outstanding += repo.items.length;
    this.addProblems(repo.problems);
  }

  /** deleteRemote: the unit's candidates (never capped: a missing one would only keep a tag). */
  addDeletions(candidates: readonly unknown[]): void {
    for (const c of candidates) this.records.push({ kind: 'deletion', value: c });
  }

  addProblems(problems: PlanProblem[]): void {
    this.totals.problems += problems.length;
    for (const p of problems) if (this.kept() < RECORDS_PER_UNIT) this.keep({ kind: 'problem', value: p });
  }

  addResult(result: ArtifactResult): void {
    this.totals[result.status]++;
    this.totals.bytes += result.bytes ?? 0;
    this.totals.referrers += result.referrers ?? 0;
    if (result.status === 'failed' && this.kept() < RECORDS_PER_UNIT) this.keep({ kind: 'failure', value: result });
  }

  private keep(record: RunRecord): void {
    this.records.push(record);
    this.keptCount++;
  }

  /** Failures and problems kept (deletions are not counted against the cap). */
  private kept(): number {
    return this.keptCount;
  }

  /** One artifact of the unit ended (with a result, or stopped). */
  settled(): void {
    this.outstanding--;
    this.check();
  }

  /** Every repository of the unit is planned. */
  planDone(): void {
    this.planned = true;
    this.check();
  }

  private check(): void {
    if (this.planned && this.outstanding <= 0) this.resolveDone();
  }
}

/**
 * The worker's side of one rule of a shared run: hands out leased units, tracks their artifacts, and
 * writes each finished unit to the database.
 */
export class CooperativeRule {
  private readonly open = new Map<string, OpenUnit>();
  private readonly completions = new Set<Promise<void>>();
  private listing: Promise<void> | undefined;
  private readonly pollMs: number;
  /**
   * Runs before a unit is written done (the engine records what the rule pushed): once every unit is
   * done, the rule state holds every push of the run, which deleteRemote's shared-manifest rule reads.
   */
  beforeComplete: (() => Promise<void>) | undefined;
  /** This worker's blob counts for the rule so far (the engine's stats), written with each unit. */
  blobCounts: (() => BlobCounts) | undefined;
  /** Set once the run is cancelled here: units not finished stay leased and go to others when this worker leaves. */
  private cancelled = false;

  constructor(private readonly opts: CooperativeRuleOptions) {
    this.pollMs = opts.pollMs ?? 500;
  }

  get membership(): RunMembership {
    return this.opts.membership;
  }

  /**
   * The next unit for this worker, or undefined when every unit of the rule is done (by anyone).
   * Takes over the listing when its lister died.
   */
  async next(): Promise<LeasedUnit | undefined> {
    const { membership, rule, signal } = this.opts;
    for (;;) {
      signal?.throwIfAborted();
      if (!this.listing && (await membership.claimListing(rule.name))) {
        this.listing = this.list();
        this.listing.catch(() => undefined); // reported through the rule's listing error and settle()
      }
      const got = await membership.lease(rule.name);
      if (got === 'done') return undefined;
      if (got !== 'wait') {
        if (got.attempt > 1) this.opts.logger.warn({ rule: rule.name, repository: got.repository, attempt: got.attempt }, 'took over a repository whose worker stopped');
        return got;
      }
      const progress = await membership.progress(rule.name);
      if (progress.listingError) throw new Error(progress.listingError);
      await sleep(this.pollMs, undefined, signal ? { signal } : undefined);
    }
  }

  /** The lister's work: every repository of the rule as units, collision groups as one unit each. */
  private async list(): Promise<void> {
    const { membership, rule, logger } = this.opts;
    logger.info({ rule: rule.name, worker: membership.workerId }, 'listing the source for the workers of this run');
    try {
      if (mappingIsInjective(rule)) {
        let batch: Unit[] = [];
        for await (const repository of this.opts.enumerate()) {
          batch.push({ repository });
          if (batch.length >= UNIT_BATCH) {
            await membership.addUnits(rule.name, batch);
            batch = [];
          }
        }
        await membership.addUnits(rule.name, batch);
      } else {
        // Names only (as a single process does for collisions): sources that flatten onto one
        // destination become one unit, the others a unit each.
        const names: string[] = [];
        for await (const repository of this.opts.enumerate()) names.push(repository);
        const collisions = await findCollisions(rule, names);
        const grouped = new Map<string, string[]>();
        for (const sources of collisions.values()) for (const s of sources) grouped.set(s, sources);
        const units: Unit[] = [];
        for (const repository of names) {
          const group = grouped.get(repository);
          if (group && group[0] !== repository) continue;
          units.push(group ? { repository, sources: group } : { repository });
        }
        for (let i = 0; i < units.length; i += UNIT_BATCH) await membership.addUnits(rule.name, units.slice(i, i + UNIT_BATCH));
      }
      await membership.listingDone(rule.name);
    } catch (err) {
      if (this.opts.signal?.aborted) return;
      await membership.listingDone(rule.name, `listing ${rule.source} failed: ${(err as Error).message}`).catch(() => undefined);
      throw err;
    }
  }

  /** Starts tracking a leased unit. */
  begin(lease: LeasedUnit): OpenUnit {
    const unit = new OpenUnit(lease);
    for (const s of lease.sources) this.open.set(s, unit);
    const completion = unit.done.then(() => this.complete(unit));
    this.completions.add(completion);
    completion.finally(() => this.completions.delete(completion)).catch(() => undefined);
    return unit;
  }

  /** A result of one of this worker's artifacts (the stats callback). */
  result(result: ArtifactResult): void {
    if (result.sourceRepository) this.open.get(result.sourceRepository)?.addResult(result);
  }

  /** Stops writing units: a cancelled run leaves them leased, for the others or the next run. */
  cancel(): void {
    this.cancelled = true;
  }

  private async complete(unit: OpenUnit): Promise<void> {
    for (const s of unit.lease.sources) if (this.open.get(s) === unit) this.open.delete(s);
    if (this.cancelled) return;
    const { membership, rule } = this.opts;
    await this.beforeComplete?.();
    // Cumulative per worker: once every unit is done, every worker's counts include all of its blobs.
    if (this.blobCounts) await membership.reportBlobs(rule.name, { ...this.blobCounts() });
    await membership.completeUnit(rule.name, unit.lease.repository, unit.totals, unit.records);
  }

  /**
   * deleteRemote once every unit is done, by exactly one worker (the finisher): the units' candidates
   * and the repositories of the rule state that no unit holds (gone from the source). Undefined for
   * the other workers.
   */
  async finisherCandidates(vanished: (wasListed: (repo: string) => Promise<boolean>) => Promise<DeletionCandidate[]>): Promise<DeletionCandidate[] | undefined> {
    const { membership, rule } = this.opts;
    if (!(await membership.claimFinisher(rule.name))) return undefined;
    const candidates: DeletionCandidate[] = [];
    for await (const c of membership.records(rule.name, 'deletion')) candidates.push(c as DeletionCandidate);
    candidates.push(...(await vanished((repo) => membership.hasUnit(rule.name, repo))));
    return candidates;
  }

  /**
   * Replaces this worker's counts in `report` by the whole run's (every worker's units), with the
   * run's failures and problems up to `cap` each: the report, and the exit code, cover the run.
   */
  async wholeRunReport(report: RuleReport, cap: number): Promise<void> {
    const { membership, rule } = this.opts;
    const { totals, failures, problems } = await membership.ruleTotals(rule.name, cap);
    const a = report.artifacts;
    a.planned = totals.planned;
    a.copied = totals.copied;
    a.present = totals.present;
    a.skipped = totals.skipped;
    a.failed = totals.failed + totals.problems;
    report.bytes = totals.bytes;
    report.referrers = totals.referrers;
    const blobs = await membership.blobTotals(rule.name);
    if (blobs) report.blobs = blobs;
    // Failures first (every worker's), then this worker's other results as the sample.
    const others = report.items.filter((i) => i.status !== 'failed');
    report.items = [...(failures as ArtifactResult[]), ...others];
    report.itemsOmitted = totals.failed > failures.length || report.itemsOmitted ? { failed: Math.max(0, totals.failed - failures.length), other: report.itemsOmitted?.other ?? 0 } : undefined;
    report.problems = problems as PlanProblem[];
    report.problemsOmitted = totals.problems > problems.length ? totals.problems - problems.length : undefined;
    report.status = a.failed ? 'partial' : 'ok';
    report.run = { id: membership.runId, worker: membership.workerId, workers: membership.workers };
  }

  /** Waits for every unit this worker began to be written, and for its listing. */
  async settle(): Promise<void> {
    while (this.completions.size) await Promise.all(this.completions);
    if (this.listing) await this.listing;
  }
}

/** Repositories of a leased unit as the async iterable the providers' listings take. */
export async function* names(sources: readonly string[]): AsyncIterable<string> {
  yield* sources;
}

/** Exactly the sources of one unit map to one destination: the planner's collision map for that unit. */
export async function unitCollisions(rule: RuleConfig, unit: LeasedUnit): Promise<Map<string, string[]> | undefined> {
  if (unit.sources.length < 2) return undefined;
  return findCollisions(rule, unit.sources);
}

/**
 * A listing's repository names as they come: `collect` runs the listing with a callback for each
 * name (providers announce names through repositoryMayMatch), the iterable yields them in order.
 */
export async function* namesOf(collect: (push: (name: string) => void) => Promise<void>): AsyncIterable<string> {
  const queue: string[] = [];
  let wake: (() => void) | undefined;
  let finished = false;
  let failure: unknown;
  const running = collect((name) => {
    queue.push(name);
    wake?.();
  }).then(
    () => void (finished = true),
    (err: unknown) => {
      failure = err;
      finished = true;
    },
  );
  running.finally(() => wake?.()).catch(() => undefined);
  for (;;) {
    if (queue.length) {
      yield queue.shift()!;
      continue;
    }
    if (finished) {
      if (failure !== undefined) throw failure;
      return;
    }
    await new Promise<void>((resolve) => (wake = resolve));
    wake = undefined;
  }
}

// Cooperation between processes on one PostgreSQL state (issue 12): several `ferry sync` processes
// started with the same config and state.url share one run. The state database holds the run, its
// units of work (one per source repository of a rule, leased with FOR UPDATE SKIP LOCKED), the
// workers (a heartbeat each: a lease or a blob claim is valid while its owner's heartbeat is fresh),
// the first copy of each blob per destination registry (a claim), and what every unit produced, so
// that any worker can tell when the whole run is done and report it.
//
// Only PostgreSQL implements it (pg-coordination.ts); SQLite is one process's state by construction.
import type { BlobCounts } from '../transfer/stats.js';

/** What a unit (one source repository of a rule) produced: summed over units, the rule's report. */
export interface UnitTotals {
  planned: number;
  copied: number;
  present: number;
  skipped: number;
  failed: number;
  problems: number;
  referrers: number;
  bytes: number;
}

export const emptyTotals = (): UnitTotals => ({ planned: 0, copied: 0, present: 0, skipped: 0, failed: 0, problems: 0, referrers: 0, bytes: 0 });

/** One record of the run kept for the report: a failed artifact or a plan problem (capped when read). */
export interface RunRecord {
  /** deletion: a deleteRemote candidate of the unit (a PushedTag), for the rule's finisher. */
  kind: 'failure' | 'problem' | 'deletion';
  value: unknown;
}

/** A unit of work: one source repository, or a group of sources that map to one destination (a collision). */
export interface Unit {
  /** The unit's name: its (first) source repository. */
  repository: string;
  /** Every source repository of the unit, when more than `repository`. */
  sources?: string[] | undefined;
}

export interface LeasedUnit {
  repository: string;
  /** Its source repositories (`[repository]` for most). */
  sources: string[];
  /** 1 the first time; more when earlier workers died holding it. */
  attempt: number;
}

/** A rule's progress in the shared run. */
export interface RuleProgress {
  /** The source listing of the rule is complete (every unit is known). */
  listed: boolean;
  /** The listing failed: the worker's message. */
  listingError?: string | undefined;
  units: number;
  done: number;
  /** Units leased by live workers right now. */
  leased: number;
}

export interface Coordination {
  /**
   * Joins the open run of `key` (the config and rules fingerprint) that has a live worker, or opens
   * a new one. The worker heartbeats until `leave`.
   */
  join(key: string, info: { rules: string[]; host: string; pid: number }): Promise<RunMembership>;
}

export interface RunMembership {
  readonly runId: number;
  readonly workerId: string;
  /** Live workers of this run (at the last heartbeat), this one included. */
  readonly workers: number;
  /**
   * Workers the limits are shared by: this one and the live workers holding a lease (at the last
   * heartbeat). A worker with nothing left to copy (waiting for the others to finish) takes no share,
   * so the last workers of a run get the whole configured figure between them.
   */
  readonly sharing: number;
  /** Called after a heartbeat when `workers` or `sharing` changed (shared limits follow `sharing`). */
  onWorkers(listener: (workers: number, sharing: number) => void): void;
  /** Rejects once the database could not be reached for a whole lease timeout (the worker must stop). */
  readonly lost: Promise<never>;

  /** Becomes the lister of `rule` when nobody live is: true = this worker enumerates the units. */
  claimListing(rule: string): Promise<boolean>;
  /** Adds units of `rule`, in listing order; repeated names are ignored (a lister that took over). */
  addUnits(rule: string, units: Unit[]): Promise<void>;
  /** The listing of `rule` is complete, or failed with `error`. */
  listingDone(rule: string, error?: string): Promise<void>;
  /**
   * Leases the next unit of `rule`: a pending one, or one whose owner died. `wait`: none now but the
   * rule is not done (listing goes on, or others hold leases); `done`: every unit of the rule is done.
   */
  lease(rule: string): Promise<LeasedUnit | 'wait' | 'done'>;
  /** The unit is done: its totals and records (failures, problems) are the run's from now on. */
  completeUnit(rule: string, repository: string, totals: UnitTotals, records: RunRecord[]): Promise<void>;
  progress(rule: string): Promise<RuleProgress>;
  /** The whole run's totals for `rule`, and its first `limit` records of each kind. */
  ruleTotals(rule: string, limit: number): Promise<{ totals: UnitTotals; failures: unknown[]; problems: unknown[] }>;
  /** Blob counts of every worker of the run for `rule` (each worker reports its own at heartbeats and at the end). */
  reportBlobs(rule: string, blobs: BlobCounts): Promise<void>;
  blobTotals(rule: string): Promise<BlobCounts | undefined>;
  /** Every record of `kind` of the rule, in order, page by page. */
  records(rule: string, kind: RunRecord['kind']): AsyncIterable<unknown>;
  /** Whether the run has a unit holding source repository `repository` (deleteRemote: was it listed). */
  hasUnit(rule: string, repository: string): Promise<boolean>;
  /** Exactly one worker gets true: it runs the rule's end-of-run work (deleteRemote). */
  claimFinisher(rule: string): Promise<boolean>;

  /**
   * The first copy of `digest` into destination `registry` in this run: true = this worker uploads it
   * (others wait and mount from where it went); false = a live worker is uploading it.
   */
  claimBlob(registry: string, digest: string): Promise<boolean>;
  /** The claimed blob is recorded (or its copy failed): the claim ends. */
  releaseBlob(registry: string, digest: string): Promise<void>;

  /** Stops heartbeating and marks the worker gone (its leases and claims free at once). */
  leave(): Promise<void>;
}

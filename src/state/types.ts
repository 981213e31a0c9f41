// The state interface: everything Ferry remembers between runs, behind one small surface with two
// implementations (SQLite in transfer.stateDir, the default; PostgreSQL when state.url names one).
//
// Every method returns a Promise so that an implementation with network round trips fits without
// changing callers. A write's Promise settles once the record is durable (committed): callers await
// it before doing anything that depends on it (a manifest is pushed only after its blobs' records
// settled), so a SIGKILL loses at most what was in flight. Implementations may batch writes queued
// in the same tick into one transaction; reads see every write issued before them.
//
// Keys: `registry` is the destination's registry key (name@host, providers/index.ts registryKey), so
// a config that points a name at another host starts fresh.
import type { Logger } from 'pino';
import type { Coordination } from './coordination.js';

/** A blob or manifest known to be in a destination repository. */
export interface Recorded {
  /** Unix ms when it was recorded (entries older than transfer.journalMaxAge are re-checked). */
  at: number;
  /** Size in bytes (blobs). */
  size?: number | undefined;
}

/** A resumable chunked upload: its session URL and the last offset the registry confirmed. */
export interface UploadCheckpoint {
  location: string;
  offset: number;
  at: number;
}

/** What Ferry put at (or found at) the destinations, per repository. The hot path of every copy. */
export interface DestinationState {
  /** The blob `digest` is in `repository` of `registry`, as far as the state knows. */
  knownBlob(registry: string, repository: string, digest: string): Promise<Recorded | undefined>;
  /** Repositories of `registry` holding `digest` (cross-repository mount sources), at most `limit`. */
  mountSources(registry: string, digest: string, limit?: number): Promise<string[]>;
  recordBlob(registry: string, repository: string, digest: string, size: number): Promise<void>;
  /** The destination turned out not to have it (deleted, garbage-collected). */
  forgetBlob(registry: string, repository: string, digest: string): Promise<void>;

  knownManifest(registry: string, repository: string, digest: string): Promise<Recorded | undefined>;
  recordManifest(registry: string, repository: string, digest: string): Promise<void>;

  upload(registry: string, repository: string, digest: string): Promise<UploadCheckpoint | undefined>;
  checkpointUpload(registry: string, repository: string, digest: string, location: string, offset: number): Promise<void>;
  /** The upload finished or was abandoned: forget its session. */
  clearUpload(registry: string, repository: string, digest: string): Promise<void>;
}

/** A tag a rule pushed, under the source tag it came from: the memory behind `deleteRemote`. */
export interface PushedTag {
  sourceRepository: string;
  sourceTag: string;
  /** Destination repository and tag. */
  repository: string;
  tag: string;
  /** Digest the rule pushed under that tag. */
  digest: string;
}

/**
 * What each rule pushed. A rule is bound to one destination (its registry key): pointed elsewhere, it
 * starts with a clean slate, so deleteRemote never deletes at a destination it did not push to.
 */
export interface RuleState {
  /** Everything `rule` pushed to `destination`, in pages (never the whole set in memory). */
  pushed(rule: string, destination: string): AsyncIterable<PushedTag>;
  /**
   * What `rule` pushed to `destination` from one source repository, in pages (an index range: the
   * deleteRemote check of one listed repository).
   */
  pushedIn(rule: string, destination: string, sourceRepository: string): AsyncIterable<PushedTag>;
  /**
   * The source repositories `rule` pushed from to `destination`, each once, in name order and in
   * pages (finding repositories gone from the source without holding the listing).
   */
  pushedRepositories(rule: string, destination: string): AsyncIterable<string>;
  /** The entries of `rule` at `destination` that point at `digest` in `repository`. */
  pushedManifest(rule: string, destination: string, repository: string, digest: string): Promise<PushedTag[]>;
  /** Records (replacing by source tag) what `rule` pushed to `destination`. */
  recordPushed(rule: string, destination: string, tags: PushedTag[]): Promise<void>;
  /** Forgets a source tag of `rule` (deleted at the destination, or no longer Ferry's). */
  forgetPushed(rule: string, destination: string, sourceRepository: string, sourceTag: string): Promise<void>;
}

/**
 * One execution of the daemon's history, stored opaquely: `summary` is what lists show (kept small
 * by the caller), `detail` the whole record with its artifact-level log (read back on request).
 */
export interface StoredExecution {
  id: number;
  rule: string;
  status: string;
  summary: unknown;
  detail?: unknown;
}

export interface ExecutionQuery {
  limit?: number | undefined;
  rule?: string | undefined;
  statuses?: readonly string[] | undefined;
}

/** The daemon's execution history. Retention is the caller's (daemon.historyLimit). */
export interface ExecutionHistory {
  /** The highest id ever stored or allocated (0 when none): new executions continue the numbering. */
  lastExecutionId(): Promise<number>;
  /**
   * A new execution id, above every id stored or allocated before and never handed out twice, also
   * to other processes on the same database (daemon replicas on PostgreSQL: ids are unique across
   * them without a process keeping a counter of its own).
   */
  allocateExecutionId(): Promise<number>;
  /** Summaries, newest first, at most `limit`; only of `rule` and only in `statuses` when given. */
  executions(opts?: ExecutionQuery): Promise<Array<Omit<StoredExecution, 'detail'>>>;
  /** The whole record (with its artifact-level log), or undefined. */
  execution(id: number): Promise<StoredExecution | undefined>;
  saveExecution(e: StoredExecution): Promise<void>;
  deleteExecutions(ids: number[]): Promise<void>;
}

/** Where the state lives and how. */
export interface StateInfo {
  /** 'sqlite' (a file in transfer.stateDir), 'memory' (tests, one-off copies) or 'postgres'. */
  kind: 'sqlite' | 'memory' | 'postgres';
  /** The database file or URL without credentials. */
  location: string;
  readOnly: boolean;
}

/**
 * The whole state of a process. Opened once per process (one per state directory: a second process
 * on the same directory is refused) and shared by its engines (the daemon's across config reloads).
 */
export interface StateStore extends DestinationState, RuleState, ExecutionHistory {
  readonly info: StateInfo;
  /**
   * Cooperation with other processes on the same state (PostgreSQL only): leased units of work, blob
   * claims, live workers. Absent or undefined: this process runs its rules whole.
   */
  coordination?(opts: { leaseTimeoutMs: number; logger?: Logger | undefined }): Coordination | undefined;
  /** Settles when every write issued so far is durable. */
  flush(): Promise<void>;
  /** Flushes, then releases the database and the lock; the store cannot be used afterwards. */
  close(): Promise<void>;
}

/** Another live process holds the state directory (exit 2 in the CLI). */
export class StateLockedError extends Error {
  override name = 'StateLockedError';
  constructor(
    readonly dir: string,
    readonly pid: number,
  ) {
    super(`state directory ${dir} is in use by process ${pid} (another ferry sync or daemon); wait for it to finish or use another --state-dir`);
  }
}

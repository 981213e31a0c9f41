// Leadership among daemon replicas on one PostgreSQL state (state.url): the leader is the replica
// holding a session advisory lock, on a connection of its own (not the pool's: a pooled connection
// is shared and recycled, and a session lock lives exactly as long as its connection). When the
// leader dies (SIGKILL, crash, a dropped connection) PostgreSQL ends its session and frees the lock;
// the others try for it every `retryMs` and one of them takes over.
//
// The same connection holds a second lock per replica, its "alive" lock: another replica can tell
// whether a replica still lives (its lock is held) without a heartbeat table, so the leader can pick
// up the runs of a replica that died.
//
// A leader whose connection breaks steps down at once (it can no longer know it holds the lock), and
// a quiet connection is checked every `retryMs`: a leader never goes on scheduling without the lock.
import pg from 'pg';
import type { Logger } from 'pino';
import { redactUrl } from './postgres.js';

/** Advisory lock class of the leader lock (two-int form; the schema lock uses the bigint form). */
const LEADER_CLASS = 0x66657279; // "fery"
const LEADER_KEY = 1;
/** Advisory lock class of the replicas' alive locks (object: hashtext(replica id)). */
const ALIVE_CLASS = 0x66657280;

export interface PgLeadershipOptions {
  /** This replica's id (unique per process). */
  replica: string;
  /** How often a non-leader tries for the lock and a leader checks its connection (ms, default 5000). */
  retryMs?: number | undefined;
  logger?: Logger | undefined;
  /** Called on every change of leadership (after `leader` changed). */
  onChange?: ((leader: boolean) => void) | undefined;
}

export class PgLeadership {
  readonly replica: string;
  /** Other replicas share the state (the daemon's Leadership interface). */
  readonly shared = true;
  private readonly retryMs: number;
  private client: pg.Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private isLeader = false;
  /** The tick in progress (ticks never overlap). */
  private ticking: Promise<void> | undefined;
  private lastError: string | undefined;

  constructor(
    private readonly url: string,
    private readonly opts: PgLeadershipOptions,
  ) {
    this.replica = opts.replica;
    this.retryMs = opts.retryMs ?? 5000;
  }

  get leader(): boolean {
    return this.isLeader;
  }

  /** Connects and tries for the lock once (resolves either way; a failure is retried). */
  async start(): Promise<void> {
    this.stopped = false;
    await this.tick();
  }

  /** Steps down (the lock is released with the connection) and stops trying. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.ticking;
    this.setLeader(false);
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => undefined);
  }

  /**
   * Whether `replica` still runs: its alive lock is held. False when the lock is free (the replica is
   * gone); true for this replica, and when it cannot be told (no connection: nothing is assumed dead).
   */
  async isAlive(replica: string): Promise<boolean> {
    if (replica === this.replica) return true;
    const c = this.client;
    if (!c) return true;
    try {
      const got = (await c.query<{ got: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS got', [ALIVE_CLASS, replica])).rows[0]?.got;
      if (!got) return true;
      await c.query('SELECT pg_advisory_unlock($1, hashtext($2))', [ALIVE_CLASS, replica]);
      return false;
    } catch {
      return true;
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), this.retryMs);
    this.timer.unref();
  }

  private tick(): Promise<void> {
    this.ticking ??= this.attempt().finally(() => {
      this.ticking = undefined;
      this.schedule();
    });
    return this.ticking;
  }

  private async attempt(): Promise<void> {
    if (this.stopped) return;
    try {
      const c = this.client ?? (await this.connect());
      if (this.stopped) return;
      if (this.isLeader) {
        // A quiet connection can be dead without an error event: ask, within the retry interval.
        await withTimeout(c.query('SELECT 1'), this.retryMs, 'the leader connection did not answer');
        return;
      }
      const got = (await withTimeout(c.query<{ got: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS got', [LEADER_CLASS, LEADER_KEY]), this.retryMs, 'no answer')).rows[0]?.got;
      if (got && !this.stopped) this.setLeader(true);
    } catch (err) {
      this.lost(err as Error);
    }
  }

  private async connect(): Promise<pg.Client> {
    const c = new pg.Client({ connectionString: this.url, keepAlive: true, connectionTimeoutMillis: Math.max(this.retryMs, 1000), application_name: `ferry daemon ${this.replica}`.slice(0, 63) });
    // Without a listener an 'error' event would crash the process; either way the session is gone.
    c.on('error', (err) => this.lost(err, c));
    c.on('end', () => this.lost(new Error('connection closed'), c));
    await c.connect();
    if (this.stopped) {
      await c.end().catch(() => undefined);
      throw new Error('stopped');
    }
    await c.query('SELECT pg_advisory_lock($1, hashtext($2))', [ALIVE_CLASS, this.replica]);
    this.client = c;
    if (this.lastError) this.opts.logger?.info({ state: redactUrl(this.url), replica: this.replica }, 'leadership connection to the state database restored');
    this.lastError = undefined;
    return c;
  }

  /** The connection is gone or unusable: step down now, reconnect at the next tick. */
  private lost(err: Error, which?: pg.Client): void {
    if (which && which !== this.client) return; // an old connection's late event
    const c = this.client;
    this.client = undefined;
    if (c) void c.end().catch(() => undefined);
    if (this.stopped) return;
    if (err.message !== this.lastError) {
      this.opts.logger?.warn({ state: redactUrl(this.url), replica: this.replica, err: err.message, leader: this.isLeader }, 'leadership connection to the state database failed; retrying');
    }
    this.lastError = err.message;
    this.setLeader(false);
  }

  private setLeader(leader: boolean): void {
    if (leader === this.isLeader) return;
    this.isLeader = leader;
    this.opts.onChange?.(leader);
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

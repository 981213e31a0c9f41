// Cooperation on PostgreSQL (coordination.ts says what and why). Every time is the database's clock
// (NOW_MS), so workers on machines whose clocks disagree still agree on who is alive. Statements run
// in autocommit on the state's pool, outside the state's write chain: a lease or a heartbeat must not
// wait behind a burst of blob records.
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { BlobCounts } from '../transfer/stats.js';
import type { Coordination, LeasedUnit, RuleProgress, RunMembership, RunRecord, Unit, UnitTotals } from './coordination.js';
import { emptyTotals } from './coordination.js';

/** The database's clock in Unix ms. */
const NOW_MS = `(extract(epoch from clock_timestamp()) * 1000)::bigint`;

/** A unit whose workers died this many times is given up (reported as a problem), not leased again. */
export const MAX_UNIT_ATTEMPTS = 3;

/** The tables of cooperation; created with the rest of the schema (postgres.ts). */
export const COORDINATION_SCHEMA = `
CREATE TABLE IF NOT EXISTS ferry_runs (
  id          BIGSERIAL PRIMARY KEY,
  key         TEXT NOT NULL,
  status      TEXT NOT NULL,
  started_at  BIGINT NOT NULL,
  finished_at BIGINT
);
CREATE INDEX IF NOT EXISTS ferry_runs_key ON ferry_runs (key, id);
CREATE TABLE IF NOT EXISTS ferry_workers (
  id           TEXT PRIMARY KEY,
  run_id       BIGINT NOT NULL,
  host         TEXT NOT NULL,
  pid          INTEGER NOT NULL,
  started_at   BIGINT NOT NULL,
  heartbeat_at BIGINT NOT NULL,
  left_at      BIGINT
);
CREATE INDEX IF NOT EXISTS ferry_workers_run ON ferry_workers (run_id);
CREATE TABLE IF NOT EXISTS ferry_run_rules (
  run_id        BIGINT NOT NULL,
  rule          TEXT NOT NULL,
  lister        TEXT,
  listed        BOOLEAN NOT NULL DEFAULT false,
  listing_error TEXT,
  finisher      TEXT,
  PRIMARY KEY (run_id, rule)
);
-- One unit per source repository of a rule; seq keeps the listing's order.
CREATE TABLE IF NOT EXISTS ferry_units (
  run_id     BIGINT NOT NULL,
  rule       TEXT NOT NULL,
  repository TEXT NOT NULL,
  seq        BIGSERIAL,
  status     TEXT NOT NULL DEFAULT 'pending',
  -- A collision group (several sources mapped to one destination) is one unit: one worker decides it.
  sources    TEXT[],
  owner      TEXT,
  attempts   INTEGER NOT NULL DEFAULT 0,
  totals     JSONB,
  PRIMARY KEY (run_id, rule, repository)
);
CREATE INDEX IF NOT EXISTS ferry_units_open ON ferry_units (run_id, rule, seq) WHERE status <> 'done';
-- Failed artifacts and plan problems of a run, for the report (read capped).
CREATE TABLE IF NOT EXISTS ferry_run_records (
  run_id BIGINT NOT NULL,
  rule   TEXT NOT NULL,
  kind   TEXT NOT NULL,
  seq    BIGSERIAL,
  value  JSONB NOT NULL,
  PRIMARY KEY (run_id, rule, kind, seq)
);
CREATE TABLE IF NOT EXISTS ferry_run_blobs (
  run_id BIGINT NOT NULL,
  rule   TEXT NOT NULL,
  worker TEXT NOT NULL,
  blobs  JSONB NOT NULL,
  PRIMARY KEY (run_id, rule, worker)
);
-- The first copy of a blob into a destination registry, while it runs (any run: a daemon replica's too).
CREATE TABLE IF NOT EXISTS ferry_blob_claims (
  registry TEXT NOT NULL,
  digest   TEXT NOT NULL,
  owner    TEXT NOT NULL,
  at       BIGINT NOT NULL,
  PRIMARY KEY (registry, digest)
);
`;

type Query = <R extends pg.QueryResultRow>(sql: string, params: unknown[]) => Promise<R[]>;
type Transaction = (fn: (query: Query) => Promise<void>) => Promise<void>;

export interface PgCoordinationOptions {
  /** Without a heartbeat for this long a worker counts as dead (state.leaseTimeout). */
  leaseTimeoutMs: number;
  logger?: Logger | undefined;
}

export class PgCoordination implements Coordination {
  constructor(
    private readonly query: Query,
    private readonly transaction: Transaction,
    private readonly opts: PgCoordinationOptions,
  ) {}

  async join(key: string, info: { rules: string[]; host: string; pid: number }): Promise<RunMembership> {
    const workerId = `${info.host}:${info.pid}:${randomUUID().slice(0, 8)}`;
    const ttl = this.opts.leaseTimeoutMs;
    let runId = 0;
    await this.transaction(async (q) => {
      // One worker at a time decides which run a key is on: two starting together join the same one.
      await q(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`ferry-run:${key}`]);
      const live = await q<{ id: string }>(
        `SELECT r.id FROM ferry_runs r WHERE r.key = $1 AND r.status = 'running'
           AND EXISTS (SELECT 1 FROM ferry_workers w WHERE w.run_id = r.id AND w.left_at IS NULL AND w.heartbeat_at > ${NOW_MS} - $2)
         ORDER BY r.id DESC LIMIT 1`,
        [key, ttl],
      );
      if (live[0]) runId = Number(live[0].id);
      else {
        // A run nobody is alive in was interrupted: a new run plans again (the state skips what landed).
        await q(`UPDATE ferry_runs SET status = 'abandoned', finished_at = ${NOW_MS} WHERE key = $1 AND status = 'running'`, [key]);
        const [row] = await q<{ id: string }>(`INSERT INTO ferry_runs (key, status, started_at) VALUES ($1, 'running', ${NOW_MS}) RETURNING id`, [key]);
        runId = Number(row!.id);
      }
      await q(`INSERT INTO ferry_run_rules (run_id, rule) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING`, [runId, info.rules]);
      await q(`INSERT INTO ferry_workers (id, run_id, host, pid, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, ${NOW_MS}, ${NOW_MS})`, [workerId, runId, info.host, info.pid]);
    });
    const membership = new PgMembership(runId, workerId, this.query, this.transaction, this.opts);
    await membership.heartbeat();
    membership.start();
    return membership;
  }
}

/** Heartbeats at most this far apart whatever the lease timeout: shares follow a joining worker within it. */
const MAX_HEARTBEAT_MS = 2000;

class PgMembership implements RunMembership {
  workers = 1;
  sharing = 1;
  private beats = 0;
  readonly lost: Promise<never>;
  private rejectLost!: (err: Error) => void;
  private readonly listeners: Array<(workers: number, sharing: number) => void> = [];
  private timer: NodeJS.Timeout | undefined;
  private lastBeat = Date.now();
  private left = false;

  constructor(
    readonly runId: number,
    readonly workerId: string,
    private readonly query: Query,
    private readonly transaction: Transaction,
    private readonly opts: PgCoordinationOptions,
  ) {
    this.lost = new Promise<never>((_, reject) => (this.rejectLost = reject));
    this.lost.catch(() => undefined);
  }

  private get ttl(): number {
    return this.opts.leaseTimeoutMs;
  }

  /** Live workers of the run, as a sub-select (parameter `$1` is the run). */
  private live(runParam = '$1'): string {
    return `SELECT id FROM ferry_workers WHERE run_id = ${runParam} AND left_at IS NULL AND heartbeat_at > ${NOW_MS} - ${Math.round(this.ttl)}`;
  }

  start(): void {
    // A third of the timeout: two beats may be lost (a GC pause, a slow query) before others take over.
    // At most MAX_HEARTBEAT_MS, because the beat also re-reads how many share the limits: with the
    // default 30 s timeout, a worker starting late would otherwise run the others over the
    // configured figure for 10 s.
    this.timer = setInterval(() => {
      this.heartbeat().catch((err: unknown) => {
        const silent = Date.now() - this.lastBeat;
        this.opts.logger?.warn({ err: (err as Error).message, silentMs: silent }, 'state database heartbeat failed');
        if (silent >= this.ttl) {
          this.stop();
          this.rejectLost(new Error(`lost the state database for ${Math.round(silent / 1000)} s (state.leaseTimeout): ${(err as Error).message}`, { cause: err }));
        }
      });
    }, Math.max(200, Math.min(MAX_HEARTBEAT_MS, this.ttl / 3)));
    this.timer.unref();
  }

  async heartbeat(): Promise<void> {
    // Sharing: the other live workers that hold a lease (copying or planning), and this one.
    const [row] = await this.query<{ live: string; sharing: string }>(
      `WITH beat AS (UPDATE ferry_workers SET heartbeat_at = ${NOW_MS} WHERE id = $2 RETURNING id),
       live AS (${this.live()})
       SELECT (SELECT count(*) FROM live WHERE live.id <> $2) + (SELECT count(*) FROM beat) AS live,
         1 + (SELECT count(DISTINCT u.owner) FROM ferry_units u
              WHERE u.run_id = $1 AND u.status = 'leased' AND u.owner <> $2 AND u.owner IN (SELECT id FROM live)) AS sharing`,
      [this.runId, this.workerId],
    );
    this.lastBeat = Date.now();
    const n = Math.max(1, Number(row?.live ?? 1));
    // The first beat (at join) counts every live worker: one that is about to lease a unit must not
    // find the others each at the whole figure; later beats lower it to the workers holding leases.
    const sharing = this.beats++ === 0 ? n : Math.max(1, Math.min(n, Number(row?.sharing ?? 1)));
    if (n !== this.workers || sharing !== this.sharing) {
      this.workers = n;
      this.sharing = sharing;
      for (const l of this.listeners) l(n, sharing);
    }
  }

  onWorkers(listener: (workers: number, sharing: number) => void): void {
    this.listeners.push(listener);
  }

  async claimListing(rule: string): Promise<boolean> {
    const rows = await this.query(
      `UPDATE ferry_run_rules SET lister = $3 WHERE run_id = $1 AND rule = $2 AND NOT listed
         AND (lister IS NULL OR lister = $3 OR lister NOT IN (${this.live()})) RETURNING rule`,
      [this.runId, rule, this.workerId],
    );
    return rows.length > 0;
  }

  async addUnits(rule: string, units: Unit[]): Promise<void> {
    if (!units.length) return;
    // Sources travel as JSON (a text[][] cannot be ragged); one statement per batch, in listing order.
    await this.query(
      `INSERT INTO ferry_units (run_id, rule, repository, sources)
       SELECT $1, $2, r, CASE WHEN s IS NULL THEN NULL ELSE ARRAY(SELECT jsonb_array_elements_text(s)) END
       FROM unnest($3::text[], $4::jsonb[]) WITH ORDINALITY AS t(r, s, n) ORDER BY n ON CONFLICT DO NOTHING`,
      [this.runId, rule, units.map((u) => u.repository), units.map((u) => (u.sources ? JSON.stringify(u.sources) : null))],
    );
  }

  async listingDone(rule: string, error?: string): Promise<void> {
    await this.query(`UPDATE ferry_run_rules SET listed = true, listing_error = $3 WHERE run_id = $1 AND rule = $2`, [this.runId, rule, error ?? null]);
  }

  async lease(rule: string): Promise<LeasedUnit | 'wait' | 'done'> {
    const [leased] = await this.query<{ repository: string; sources: string[] | null; attempts: number }>(
      `WITH next AS (
         SELECT run_id, rule, repository FROM ferry_units
         WHERE run_id = $1 AND rule = $2 AND status <> 'done' AND attempts < ${MAX_UNIT_ATTEMPTS}
           AND (status = 'pending' OR owner IS NULL OR owner NOT IN (${this.live()}))
         ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)
       UPDATE ferry_units u SET status = 'leased', owner = $3, attempts = u.attempts + 1
       FROM next WHERE u.run_id = next.run_id AND u.rule = next.rule AND u.repository = next.repository
       RETURNING u.repository, u.sources, u.attempts`,
      [this.runId, rule, this.workerId],
    );
    if (leased) return { repository: leased.repository, sources: leased.sources ?? [leased.repository], attempt: leased.attempts };
    await this.giveUpPoisonUnits(rule);
    const p = await this.progress(rule);
    return p.listed && p.done >= p.units ? 'done' : 'wait';
  }

  /** Units whose workers died MAX_UNIT_ATTEMPTS times end as a problem of the run instead of killing more workers. */
  private async giveUpPoisonUnits(rule: string): Promise<void> {
    await this.query(
      `WITH gone AS (
         UPDATE ferry_units SET status = 'done', totals = $3::jsonb
         WHERE run_id = $1 AND rule = $2 AND status = 'leased' AND attempts >= ${MAX_UNIT_ATTEMPTS} AND owner NOT IN (${this.live()})
         RETURNING repository)
       INSERT INTO ferry_run_records (run_id, rule, kind, value)
       SELECT $1, $2, 'problem', jsonb_build_object('rule', $2::text, 'sourceRepository', repository,
         'message', 'given up: the workers that took this repository stopped ${MAX_UNIT_ATTEMPTS} times without finishing it') FROM gone`,
      [this.runId, rule, JSON.stringify({ ...emptyTotals(), problems: 1 })],
    );
  }

  async completeUnit(rule: string, repository: string, totals: UnitTotals, records: RunRecord[]): Promise<void> {
    await this.transaction(async (q) => {
      await q(`UPDATE ferry_units SET status = 'done', totals = $4::jsonb WHERE run_id = $1 AND rule = $2 AND repository = $3`, [this.runId, rule, repository, JSON.stringify(totals)]);
      if (records.length) {
        await q(`INSERT INTO ferry_run_records (run_id, rule, kind, value) SELECT $1, $2, k, v FROM unnest($3::text[], $4::jsonb[]) AS t(k, v)`, [
          this.runId,
          rule,
          records.map((r) => r.kind),
          records.map((r) => JSON.stringify(r.value)),
        ]);
      }
    });
  }

  async progress(rule: string): Promise<RuleProgress> {
    const [row] = await this.query<{ listed: boolean; listing_error: string | null; units: string; done: string; leased: string }>(
      `SELECT r.listed, r.listing_error,
         (SELECT count(*) FROM ferry_units u WHERE u.run_id = $1 AND u.rule = $2) AS units,
         (SELECT count(*) FROM ferry_units u WHERE u.run_id = $1 AND u.rule = $2 AND u.status = 'done') AS done,
         (SELECT count(*) FROM ferry_units u WHERE u.run_id = $1 AND u.rule = $2 AND u.status = 'leased' AND u.owner IN (${this.live()})) AS leased
       FROM ferry_run_rules r WHERE r.run_id = $1 AND r.rule = $2`,
      [this.runId, rule],
    );
    if (!row) return { listed: false, units: 0, done: 0, leased: 0 };
    return { listed: row.listed, listingError: row.listing_error ?? undefined, units: Number(row.units), done: Number(row.done), leased: Number(row.leased) };
  }

  async ruleTotals(rule: string, limit: number): Promise<{ totals: UnitTotals; failures: unknown[]; problems: unknown[] }> {
    const keys = Object.keys(emptyTotals()) as Array<keyof UnitTotals>;
    const [sums] = await this.query<Record<string, string | null>>(
      `SELECT ${keys.map((k) => `sum((totals->>'${k}')::bigint) AS "${k}"`).join(', ')} FROM ferry_units WHERE run_id = $1 AND rule = $2 AND status = 'done'`,
      [this.runId, rule],
    );
    const totals = emptyTotals();
    for (const k of keys) totals[k] = Number(sums?.[k] ?? 0);
    const records = async (kind: string) =>
      (await this.query<{ value: unknown }>(`SELECT value FROM ferry_run_records WHERE run_id = $1 AND rule = $2 AND kind = $3 ORDER BY seq LIMIT $4`, [this.runId, rule, kind, limit])).map((r) => r.value);
    return { totals, failures: await records('failure'), problems: await records('problem') };
  }

  async reportBlobs(rule: string, blobs: BlobCounts): Promise<void> {
    await this.query(
      `INSERT INTO ferry_run_blobs (run_id, rule, worker, blobs) VALUES ($1, $2, $3, $4::jsonb)
       ON CONFLICT (run_id, rule, worker) DO UPDATE SET blobs = EXCLUDED.blobs`,
      [this.runId, rule, this.workerId, JSON.stringify(blobs)],
    );
  }

  async blobTotals(rule: string): Promise<BlobCounts | undefined> {
    const rows = await this.query<{ blobs: BlobCounts }>(`SELECT blobs FROM ferry_run_blobs WHERE run_id = $1 AND rule = $2`, [this.runId, rule]);
    if (!rows.length) return undefined;
    const sum: BlobCounts = { uploaded: 0, mounted: 0, skipped: 0 };
    for (const { blobs } of rows) for (const k of Object.keys(sum) as Array<keyof BlobCounts>) sum[k] += Number(blobs[k] ?? 0);
    return sum;
  }

  async *records(rule: string, kind: RunRecord['kind']): AsyncIterable<unknown> {
    for (let after = 0; ; ) {
      const rows = await this.query<{ seq: string; value: unknown }>(
        `SELECT seq, value FROM ferry_run_records WHERE run_id = $1 AND rule = $2 AND kind = $3 AND seq > $4 ORDER BY seq LIMIT 1000`,
        [this.runId, rule, kind, after],
      );
      for (const r of rows) yield r.value;
      if (rows.length < 1000) return;
      after = Number(rows[rows.length - 1]!.seq);
    }
  }

  async hasUnit(rule: string, repository: string): Promise<boolean> {
    const rows = await this.query(`SELECT 1 FROM ferry_units WHERE run_id = $1 AND rule = $2 AND (repository = $3 OR $3 = ANY(sources)) LIMIT 1`, [this.runId, rule, repository]);
    return rows.length > 0;
  }

  async claimFinisher(rule: string): Promise<boolean> {
    const rows = await this.query(`UPDATE ferry_run_rules SET finisher = $3 WHERE run_id = $1 AND rule = $2 AND finisher IS NULL RETURNING rule`, [this.runId, rule, this.workerId]);
    return rows.length > 0;
  }

  async claimBlob(registry: string, digest: string): Promise<boolean> {
    // The claim is valid while its owner's heartbeat is fresh: a dead uploader's blob goes to the next asker.
    const rows = await this.query(
      `INSERT INTO ferry_blob_claims AS c (registry, digest, owner, at) VALUES ($1, $2, $3, ${NOW_MS})
       ON CONFLICT (registry, digest) DO UPDATE SET owner = EXCLUDED.owner, at = EXCLUDED.at
       WHERE c.owner = EXCLUDED.owner
          OR NOT EXISTS (SELECT 1 FROM ferry_workers w WHERE w.id = c.owner AND w.left_at IS NULL AND w.heartbeat_at > ${NOW_MS} - ${Math.round(this.ttl)})
       RETURNING owner`,
      [registry, digest, this.workerId],
    );
    return rows.length > 0;
  }

  async releaseBlob(registry: string, digest: string): Promise<void> {
    await this.query(`DELETE FROM ferry_blob_claims WHERE registry = $1 AND digest = $2 AND owner = $3`, [registry, digest, this.workerId]);
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  async leave(): Promise<void> {
    if (this.left) return;
    this.left = true;
    this.stop();
    await this.transaction(async (q) => {
      await q(`UPDATE ferry_workers SET left_at = ${NOW_MS} WHERE id = $1`, [this.workerId]);
      await q(`DELETE FROM ferry_blob_claims WHERE owner = $1`, [this.workerId]);
      // The last unit of the last rule done: the run is over (a later start opens a new one).
      await q(
        `UPDATE ferry_runs SET status = 'done', finished_at = ${NOW_MS} WHERE id = $1 AND status = 'running'
           AND NOT EXISTS (SELECT 1 FROM ferry_run_rules WHERE run_id = $1 AND NOT listed)
           AND NOT EXISTS (SELECT 1 FROM ferry_units WHERE run_id = $1 AND status <> 'done')`,
        [this.runId],
      );
    });
  }
}

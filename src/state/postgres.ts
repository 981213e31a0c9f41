// The state in PostgreSQL (`state.url`), for machines that share one migration. The same StateStore as
// the SQLite default, table for table: every write is one statement in autocommit (durable when its
// Promise settles), every look-up one indexed query. The schema is created and migrated by Ferry under
// an advisory lock, so several processes starting together do not race each other.
//
// Several processes on one state.url cooperate through the tables of pg-coordination.ts (leased units
// of work, blob claims, worker heartbeats): `coordination()` hands them to the engine.
import { createRequire } from 'node:module';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { Coordination } from './coordination.js';
import { COORDINATION_SCHEMA, PgCoordination } from './pg-coordination.js';
import type { ExecutionQuery, PushedTag, Recorded, StateInfo, StateStore, StoredExecution, UploadCheckpoint } from './types.js';

/** Schema version of the PostgreSQL state (the `ferry_meta` row `schema`). */
export const PG_SCHEMA_VERSION = 2;

/** Advisory lock key taken while the schema is created or migrated ("ferry" in ASCII). */
const SCHEMA_LOCK = 0x6665727279;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS ferry_meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
-- Blobs known per destination repository; (registry, digest) leads the key: mount sources are a range scan.
CREATE TABLE IF NOT EXISTS ferry_blobs (
  registry   TEXT NOT NULL,
  digest     TEXT NOT NULL,
  repository TEXT NOT NULL,
  size       BIGINT,
  at         BIGINT NOT NULL,
  PRIMARY KEY (registry, digest, repository)
);
CREATE TABLE IF NOT EXISTS ferry_manifests (
  registry   TEXT NOT NULL,
  repository TEXT NOT NULL,
  digest     TEXT NOT NULL,
  at         BIGINT NOT NULL,
  PRIMARY KEY (registry, repository, digest)
);
-- Resumable chunked uploads: session URL and the last offset the registry confirmed.
CREATE TABLE IF NOT EXISTS ferry_uploads (
  registry   TEXT NOT NULL,
  repository TEXT NOT NULL,
  digest     TEXT NOT NULL,
  location   TEXT NOT NULL,
  "offset"   BIGINT NOT NULL,
  at         BIGINT NOT NULL,
  PRIMARY KEY (registry, repository, digest)
);
-- deleteRemote: the destination each rule is bound to, and what it pushed per source tag.
CREATE TABLE IF NOT EXISTS ferry_rule_destinations (
  rule        TEXT PRIMARY KEY,
  destination TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ferry_rule_tags (
  rule              TEXT NOT NULL,
  source_repository TEXT NOT NULL,
  source_tag        TEXT NOT NULL,
  repository        TEXT NOT NULL,
  tag               TEXT NOT NULL,
  digest            TEXT NOT NULL,
  PRIMARY KEY (rule, source_repository, source_tag)
);
CREATE INDEX IF NOT EXISTS ferry_rule_tags_manifest ON ferry_rule_tags (rule, repository, digest);
-- The daemon's execution history.
CREATE TABLE IF NOT EXISTS ferry_executions (
  id      BIGINT PRIMARY KEY,
  rule    TEXT NOT NULL,
  status  TEXT NOT NULL,
  summary JSONB NOT NULL,
  detail  JSONB
);
CREATE INDEX IF NOT EXISTS ferry_executions_rule ON ferry_executions (rule, id);
`;

/** Rows per page when iterating what a rule pushed (never the whole set in memory). */
const PAGE = 1000;

/**
 * The pg driver, loaded by the first PostgreSQL state: a process on SQLite (every `ferry plan` and
 * sync without state.url) never pays for it (a few MB of resident code).
 */
function loadPg(): typeof pg {
  return createRequire(import.meta.url)('pg') as typeof pg;
}

/** The database refused or could not be reached: names the database (without credentials). */
export class StateDatabaseError extends Error {
  override name = 'StateDatabaseError';
}

export interface PostgresStateOptions {
  logger?: Logger | undefined;
  /** Connections in the pool (default 8: the blob queue's look-ups and writes). */
  maxConnections?: number | undefined;
  /** Dry runs and `ferry plan`: read, never write (writes resolve without a statement). */
  readOnly?: boolean | undefined;
}

/** postgres://user:password@host:5432/db → postgres://user@host:5432/db (for logs and errors). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '';
    return u.toString().replace(/:@/, '@');
  } catch {
    return 'postgres://(unparsable URL)';
  }
}

export class PostgresState implements StateStore {
  readonly info: StateInfo;
  private readonly pool: pg.Pool;
  private readonly ready: Promise<void>;
  private closed = false;
  /** The tail of the write chain (never rejects). */
  private writes: Promise<unknown> = Promise.resolve();

  constructor(
    url: string,
    private readonly opts: PostgresStateOptions = {},
  ) {
    this.info = { kind: 'postgres', location: redactUrl(url), readOnly: !!opts.readOnly };
    this.pool = new (loadPg().Pool)({ connectionString: url, max: opts.maxConnections ?? 8, connectionTimeoutMillis: 10_000 });
    // An idle client that loses its connection emits here; the next query reports the problem.
    this.pool.on('error', (err) => opts.logger?.warn({ state: this.info.location, err: err.message }, 'state database connection lost'));
    this.ready = this.migrate();
    this.ready.catch(() => undefined); // reported by the first query that awaits it
  }

  private async migrate(): Promise<void> {
    const client = await this.pool.connect().catch((err: unknown) => {
      throw this.wrap(err, 'connect');
    });
    try {
      await client.query('SELECT pg_advisory_lock($1)', [SCHEMA_LOCK]);
      try {
        // A database already at this version gets no DDL: CREATE ... IF NOT EXISTS still locks the
        // tables, and would deadlock with a process that is already working on them.
        const current = await client.query<{ value: string }>(`SELECT value FROM ferry_meta WHERE key = 'schema'`).then(
          (r) => (r.rows[0] ? Number(r.rows[0].value) : 0),
          () => 0, // no ferry_meta yet: a new database
        );
        if (current > PG_SCHEMA_VERSION) {
          throw new StateDatabaseError(`state database ${this.info.location} has schema ${current}, newer than this Ferry knows (${PG_SCHEMA_VERSION}): upgrade Ferry`);
        }
        if (current === PG_SCHEMA_VERSION) return;
        await client.query(SCHEMA);
        await client.query(COORDINATION_SCHEMA);
        await client.query(`INSERT INTO ferry_meta (key, value) VALUES ('schema', $1) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, [String(PG_SCHEMA_VERSION)]);
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [SCHEMA_LOCK]);
      }
    } catch (err) {
      throw err instanceof StateDatabaseError ? err : this.wrap(err, 'create the schema');
    } finally {
      client.release();
    }
  }

  private wrap(err: unknown, what: string): StateDatabaseError {
    const e = err as Error & { code?: string };
    return new StateDatabaseError(`state database ${this.info.location}: cannot ${what}: ${e.message}${e.code ? ` (${e.code})` : ''}`, { cause: err });
  }

  /**
   * A write statement: dropped in a read-only store. Writes run one after another in the order they
   * were issued, and every read waits for the writes issued before it (the StateStore promise: a read
   * sees every earlier write, awaited or not), which a pool of connections would not give by itself.
   */
  private w(sql: string, params: unknown[] = []): Promise<void> {
    if (this.info.readOnly) return Promise.resolve();
    return this.serial(() => this.run(sql, params).then(() => undefined));
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.writes.then(fn);
    this.writes = p.catch(() => undefined);
    return p;
  }

  /** A read: after the writes issued before it. */
  private async q<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    await this.writes;
    return this.run<R>(sql, params);
  }

  private async run<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params: unknown[]): Promise<R[]> {
    if (this.closed) throw new StateDatabaseError(`state database ${this.info.location} is closed`);
    await this.ready;
    try {
      return (await this.pool.query<R>(sql, params)).rows;
    } catch (err) {
      throw this.wrap(err, 'query');
    }
  }

  async flush(): Promise<void> {
    await this.writes;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.writes;
    this.closed = true;
    await this.ready.catch(() => undefined);
    await this.pool.end();
  }

  /**
   * Cooperation with the other processes on this database (leases, blob claims, heartbeats); none for
   * a read-only store (dry runs and `ferry plan` never take work).
   */
  coordination(opts: { leaseTimeoutMs: number; logger?: Logger | undefined }): Coordination | undefined {
    if (this.info.readOnly) return undefined;
    const query = <R extends pg.QueryResultRow>(sql: string, params: unknown[]) => this.run<R>(sql, params);
    const transaction = (fn: (q: typeof query) => Promise<void>) =>
      this.inTransaction(async (c) => {
        const q = async <R extends pg.QueryResultRow>(sql: string, params: unknown[]) => (await c.query<R>(sql, params)).rows;
        await fn(q);
      });
    return new PgCoordination(query, transaction, { leaseTimeoutMs: opts.leaseTimeoutMs, logger: opts.logger ?? this.opts.logger });
  }

  // ---- destination state ----

  async knownBlob(registry: string, repository: string, digest: string): Promise<Recorded | undefined> {
    const [row] = await this.q<{ at: string; size: string | null }>('SELECT at, size FROM ferry_blobs WHERE registry = $1 AND digest = $2 AND repository = $3', [registry, digest, repository]);
    return row ? { at: Number(row.at), size: row.size === null ? undefined : Number(row.size) } : undefined;
  }

  async mountSources(registry: string, digest: string, limit = 8): Promise<string[]> {
    const rows = await this.q<{ repository: string }>('SELECT repository FROM ferry_blobs WHERE registry = $1 AND digest = $2 ORDER BY at DESC LIMIT $3', [registry, digest, limit]);
    return rows.map((r) => r.repository);
  }

  async recordBlob(registry: string, repository: string, digest: string, size: number): Promise<void> {
    // One statement, so the blob's record and the end of its upload session commit together.
    await this.w(
      `WITH gone AS (DELETE FROM ferry_uploads WHERE registry = $1 AND repository = $3 AND digest = $2)
       INSERT INTO ferry_blobs (registry, digest, repository, size, at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (registry, digest, repository) DO UPDATE SET size = EXCLUDED.size, at = EXCLUDED.at`,
      [registry, digest, repository, size, Date.now()],
    );
  }

  async forgetBlob(registry: string, repository: string, digest: string): Promise<void> {
    await this.w('DELETE FROM ferry_blobs WHERE registry = $1 AND digest = $2 AND repository = $3', [registry, digest, repository]);
  }

  async knownManifest(registry: string, repository: string, digest: string): Promise<Recorded | undefined> {
    const [row] = await this.q<{ at: string }>('SELECT at FROM ferry_manifests WHERE registry = $1 AND repository = $2 AND digest = $3', [registry, repository, digest]);
    return row ? { at: Number(row.at) } : undefined;
  }

  async recordManifest(registry: string, repository: string, digest: string): Promise<void> {
    await this.w(
      `INSERT INTO ferry_manifests (registry, repository, digest, at) VALUES ($1, $2, $3, $4)
       ON CONFLICT (registry, repository, digest) DO UPDATE SET at = EXCLUDED.at`,
      [registry, repository, digest, Date.now()],
    );
  }

  async upload(registry: string, repository: string, digest: string): Promise<UploadCheckpoint | undefined> {
    const [row] = await this.q<{ location: string; offset: string; at: string }>('SELECT location, "offset", at FROM ferry_uploads WHERE registry = $1 AND repository = $2 AND digest = $3', [
      registry,
      repository,
      digest,
    ]);
    return row ? { location: row.location, offset: Number(row.offset), at: Number(row.at) } : undefined;
  }

  async checkpointUpload(registry: string, repository: string, digest: string, location: string, offset: number): Promise<void> {
    await this.w(
      `INSERT INTO ferry_uploads (registry, repository, digest, location, "offset", at) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (registry, repository, digest) DO UPDATE SET location = EXCLUDED.location, "offset" = EXCLUDED."offset", at = EXCLUDED.at`,
      [registry, repository, digest, location, offset, Date.now()],
    );
  }

  async clearUpload(registry: string, repository: string, digest: string): Promise<void> {
    await this.w('DELETE FROM ferry_uploads WHERE registry = $1 AND repository = $2 AND digest = $3', [registry, repository, digest]);
  }

  // ---- rule state ----

  private async boundTo(rule: string): Promise<string | undefined> {
    const [row] = await this.q<{ destination: string }>('SELECT destination FROM ferry_rule_destinations WHERE rule = $1', [rule]);
    return row?.destination;
  }

  async *pushed(rule: string, destination: string): AsyncIterable<PushedTag> {
    if ((await this.boundTo(rule)) !== destination) return;
    let after: [string, string] = ['', ''];
    for (;;) {
      const rows = await this.q<RuleTagRow>(
        `SELECT source_repository, source_tag, repository, tag, digest FROM ferry_rule_tags
         WHERE rule = $1 AND (source_repository, source_tag) > ($2, $3)
         ORDER BY source_repository, source_tag LIMIT $4`,
        [rule, after[0], after[1], PAGE],
      );
      for (const r of rows) yield fromRow(r);
      if (rows.length < PAGE) return;
      const last = rows[rows.length - 1]!;
      after = [last.source_repository, last.source_tag];
    }
  }

  async *pushedIn(rule: string, destination: string, sourceRepository: string): AsyncIterable<PushedTag> {
    if ((await this.boundTo(rule)) !== destination) return;
    let after = '';
    for (;;) {
      const rows = await this.q<RuleTagRow>(
        `SELECT source_repository, source_tag, repository, tag, digest FROM ferry_rule_tags
         WHERE rule = $1 AND source_repository = $2 AND source_tag > $3 ORDER BY source_tag LIMIT $4`,
        [rule, sourceRepository, after, PAGE],
      );
      for (const r of rows) yield fromRow(r);
      if (rows.length < PAGE) return;
      after = rows[rows.length - 1]!.source_tag;
    }
  }

  async *pushedRepositories(rule: string, destination: string): AsyncIterable<string> {
    if ((await this.boundTo(rule)) !== destination) return;
    let after = '';
    for (;;) {
      // A loose index scan: one descent of the primary key per repository, not a read of every tag.
      const rows = await this.q<{ source_repository: string }>(
        `WITH RECURSIVE r(source_repository) AS (
           (SELECT source_repository FROM ferry_rule_tags WHERE rule = $1 AND source_repository > $2 ORDER BY source_repository LIMIT 1)
           UNION ALL
           SELECT (SELECT t.source_repository FROM ferry_rule_tags t WHERE t.rule = $1 AND t.source_repository > r.source_repository ORDER BY t.source_repository LIMIT 1)
           FROM r WHERE r.source_repository IS NOT NULL
         )
         SELECT source_repository FROM r WHERE source_repository IS NOT NULL LIMIT $3`,
        [rule, after, PAGE],
      );
      for (const r of rows) yield r.source_repository;
      if (rows.length < PAGE) return;
      after = rows[rows.length - 1]!.source_repository;
    }
  }

  async pushedManifest(rule: string, destination: string, repository: string, digest: string): Promise<PushedTag[]> {
    if ((await this.boundTo(rule)) !== destination) return [];
    const rows = await this.q<RuleTagRow>('SELECT source_repository, source_tag, repository, tag, digest FROM ferry_rule_tags WHERE rule = $1 AND repository = $2 AND digest = $3', [rule, repository, digest]);
    return rows.map(fromRow);
  }

  async recordPushed(rule: string, destination: string, tags: PushedTag[]): Promise<void> {
    await this.transaction(async (c) => {
      // A rule pointed at another destination starts with a clean slate: never delete elsewhere.
      const bound = (await c.query<{ destination: string }>('SELECT destination FROM ferry_rule_destinations WHERE rule = $1 FOR UPDATE', [rule])).rows[0]?.destination;
      if (bound !== destination) {
        if (bound !== undefined) await c.query('DELETE FROM ferry_rule_tags WHERE rule = $1', [rule]);
        await c.query('INSERT INTO ferry_rule_destinations (rule, destination) VALUES ($1, $2) ON CONFLICT (rule) DO UPDATE SET destination = EXCLUDED.destination', [rule, destination]);
      }
      for (const t of tags) {
        await c.query(
          `INSERT INTO ferry_rule_tags (rule, source_repository, source_tag, repository, tag, digest) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (rule, source_repository, source_tag) DO UPDATE SET repository = EXCLUDED.repository, tag = EXCLUDED.tag, digest = EXCLUDED.digest`,
          [rule, t.sourceRepository, t.sourceTag, t.repository, t.tag, t.digest],
        );
      }
    });
  }

  async forgetPushed(rule: string, destination: string, sourceRepository: string, sourceTag: string): Promise<void> {
    await this.w(
      `DELETE FROM ferry_rule_tags t USING ferry_rule_destinations d
       WHERE t.rule = $1 AND t.source_repository = $3 AND t.source_tag = $4 AND d.rule = t.rule AND d.destination = $2`,
      [rule, destination, sourceRepository, sourceTag],
    );
  }

  private transaction(fn: (c: pg.PoolClient) => Promise<void>): Promise<void> {
    if (this.info.readOnly) return Promise.resolve();
    return this.serial(() => this.inTransaction(fn));
  }

  private async inTransaction(fn: (c: pg.PoolClient) => Promise<void>): Promise<void> {
    if (this.closed) throw new StateDatabaseError(`state database ${this.info.location} is closed`);
    await this.ready;
    const c = await this.pool.connect().catch((err: unknown) => {
      throw this.wrap(err, 'connect');
    });
    try {
      await c.query('BEGIN');
      await fn(c);
      await c.query('COMMIT');
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err instanceof StateDatabaseError ? err : this.wrap(err, 'write');
    } finally {
      c.release();
    }
  }

  // ---- execution history ----

  async lastExecutionId(): Promise<number> {
    const [row] = await this.q<{ id: string | null; recorded: string | null }>(
      `SELECT (SELECT max(id) FROM ferry_executions) AS id, (SELECT value FROM ferry_meta WHERE key = 'lastExecutionId') AS recorded`,
    );
    return Math.max(Number(row?.id ?? 0), Number(row?.recorded ?? 0));
  }

  async allocateExecutionId(): Promise<number> {
    // One statement: concurrent callers (other replicas) queue on the ferry_meta row, each gets its
    // own id. Above ids stored by an older Ferry too, which did not record lastExecutionId first.
    const [row] = await this.serial(() =>
      this.run<{ value: string }>(
        `INSERT INTO ferry_meta (key, value) VALUES ('lastExecutionId', (SELECT COALESCE(max(id), 0) + 1 FROM ferry_executions)::text)
         ON CONFLICT (key) DO UPDATE SET value = (GREATEST(ferry_meta.value::bigint, (SELECT COALESCE(max(id), 0) FROM ferry_executions)) + 1)::text
         RETURNING value`,
        [],
      ),
    );
    return Number(row!.value);
  }

  async executions(opts: ExecutionQuery = {}): Promise<Array<Omit<StoredExecution, 'detail'>>> {
    const rows = await this.q<{ id: string; rule: string; status: string; summary: unknown }>(
      `SELECT id, rule, status, summary FROM ferry_executions
       WHERE ($1::text IS NULL OR rule = $1) AND ($3::text[] IS NULL OR status = ANY($3::text[]))
       ORDER BY id DESC LIMIT $2`,
      [opts.rule ?? null, opts.limit ?? null, opts.statuses ? [...opts.statuses] : null],
    );
    return rows.map((r) => ({ id: Number(r.id), rule: r.rule, status: r.status, summary: r.summary }));
  }

  async execution(id: number): Promise<StoredExecution | undefined> {
    const [r] = await this.q<{ id: string; rule: string; status: string; summary: unknown; detail: unknown }>('SELECT id, rule, status, summary, detail FROM ferry_executions WHERE id = $1', [id]);
    if (!r) return undefined;
    return { id: Number(r.id), rule: r.rule, status: r.status, summary: r.summary, detail: r.detail ?? undefined };
  }

  async saveExecution(e: StoredExecution): Promise<void> {
    // Serialized now: the caller may change its object before the statement runs.
    const summary = JSON.stringify(e.summary);
    const detail = e.detail === undefined ? null : JSON.stringify(e.detail);
    await this.w(
      `WITH meta AS (
         INSERT INTO ferry_meta (key, value) VALUES ('lastExecutionId', $6)
         ON CONFLICT (key) DO UPDATE SET value = GREATEST(ferry_meta.value::bigint, EXCLUDED.value::bigint)::text
       )
       INSERT INTO ferry_executions (id, rule, status, summary, detail) VALUES ($1, $2, $3, $4::jsonb, $5::jsonb)
       ON CONFLICT (id) DO UPDATE SET rule = EXCLUDED.rule, status = EXCLUDED.status, summary = EXCLUDED.summary, detail = EXCLUDED.detail`,
      [e.id, e.rule, e.status, summary, detail, String(e.id)],
    );
  }

  async deleteExecutions(ids: number[]): Promise<void> {
    if (ids.length) await this.w('DELETE FROM ferry_executions WHERE id = ANY($1::bigint[])', [ids]);
  }
}

interface RuleTagRow {
  source_repository: string;
  source_tag: string;
  repository: string;
  tag: string;
  digest: string;
}

function fromRow(r: RuleTagRow): PushedTag {
  return { sourceRepository: r.source_repository, sourceTag: r.source_tag, repository: r.repository, tag: r.tag, digest: r.digest };
}

// The SQLite state: one file (ferry.db) in transfer.stateDir, in WAL mode, every look-up by primary
// key. better-sqlite3 is synchronous; the StateStore interface is Promise-returning so that a
// networked implementation fits the same callers.
//
// Writes are queued and committed together, in one transaction, at the end of the current turn of the
// event loop (or at once when 256 are queued); fsynced ones (below) are gathered for 50 ms. Each
// write's Promise settles after its commit. A read first commits what is queued, so it sees every
// earlier write.
//
// Durability. WAL with synchronous=NORMAL for the destination records (blobs, manifests, upload
// checkpoints): a commit is in the WAL, in the OS page cache, when it returns, so a SIGKILL of Ferry
// loses nothing committed (today's promise: at most what was in flight); an OS crash or power cut may
// roll back the last commits, never corrupt the file, and a lost record only costs a HEAD or an upload
// again. Rule state (what deleteRemote may delete) and the daemon's history are committed with
// synchronous=FULL (the WAL is fsynced at commit): they are records of what happened, rare, and
// cheap to sync; the fsync also makes every earlier NORMAL commit durable.
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { silentLogger } from '../log.js';
import { hasLegacyState, importLegacyState } from './legacy.js';
import { type StateLock, lockStateDir } from './lock.js';
import { REGISTRY_ID, decodeDigest, encodeDigest } from './codec.js';
import { MIGRATE_1_TO_2, MIGRATE_1_TO_2_COPY, SCHEMA, SCHEMA_VERSION } from './schema.js';
import type { ExecutionQuery, PushedTag, Recorded, StateInfo, StateStore, StoredExecution, UploadCheckpoint } from './types.js';

export const DB_FILE = 'ferry.db';

const BATCH = 256;
/** How long fsynced (synchronous=FULL) writes are gathered before their commit. */
const FULL_DELAY_MS = 50;

/** Open stores: a process.exit() (a second Ctrl-C) still commits what they have queued. */
const open = new Set<SqliteState>();
let exitHook = false;
function track(state: SqliteState): void {
  open.add(state);
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => {
    for (const s of open) s.commitQueued();
  });
}
const PAGE = 1000;

export interface SqliteStateOptions {
  logger?: Logger | undefined;
  /** Read without writing (dry runs): opened read-only, writes are dropped. */
  readOnly?: boolean | undefined;
}

type Durability = 'normal' | 'full';

interface QueuedWrite {
  run: () => void;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class SqliteState implements StateStore {
  readonly info: StateInfo;
  readonly db: Database.Database;
  private readonly logger: Logger;
  private readonly lock: StateLock | undefined;
  private readonly queues: Record<Durability, QueuedWrite[]> = { normal: [], full: [] };
  private immediate: NodeJS.Immediate | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly s: ReturnType<typeof prepare>;

  private constructor(db: Database.Database, info: StateInfo, logger: Logger, lock: StateLock | undefined) {
    this.db = db;
    this.info = info;
    this.logger = logger;
    this.lock = lock;
    this.s = prepare(db);
    if (!info.readOnly) track(this);
  }

  /** Commits queued writes now (process exit). */
  commitQueued(): void {
    if (!this.closed) this.commit();
  }

  /** An in-memory database (tests, one-off copies, dry runs without a state directory). */
  static memory(opts: SqliteStateOptions & { importFrom?: string | undefined } = {}): SqliteState {
    const db = new Database(':memory:');
    migrate(db);
    // A dry run on a directory of an earlier version: read its files, leave them in place.
    if (opts.importFrom && hasLegacyState(opts.importFrom)) importLegacyState(db, opts.importFrom, opts.logger ?? silentLogger, false);
    return new SqliteState(db, { kind: 'memory', location: ':memory:', readOnly: false }, opts.logger ?? silentLogger, undefined);
  }

  /**
   * Opens (creating, 0700 / 0600) the database in `dir`. Takes the directory's lock first (throws
   * StateLockedError when another live process holds it). A file that is not a database or is
   * corrupt is logged and moved aside (`ferry.db.corrupt-<time>`), and a new one is created.
   */
  static open(dir: string, opts: SqliteStateOptions = {}): SqliteState {
    const logger = opts.logger ?? silentLogger;
    const file = join(dir, DB_FILE);
    if (opts.readOnly) {
      const db = new Database(file, { readonly: true, fileMustExist: true });
      db.pragma('busy_timeout = 5000');
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version !== SCHEMA_VERSION) {
        // Read-only cannot migrate: the next sync does. Until then a dry run reads an empty state.
        db.close();
        logger.warn({ state: file, schema: version, expected: SCHEMA_VERSION }, 'the state database has another schema version: this dry run does not use it (the next sync migrates it)');
        return SqliteState.memory({ logger });
      }
      return new SqliteState(db, { kind: 'sqlite', location: file, readOnly: true }, logger, undefined);
    }
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const lock = lockStateDir(dir);
    try {
      const db = openWritable(file, logger);
      if (hasLegacyState(dir)) importLegacyState(db, dir, logger);
      return new SqliteState(db, { kind: 'sqlite', location: file, readOnly: false }, logger, lock);
    } catch (err) {
      lock.release();
      throw err;
    }
  }

  // ---- writes ----

  private write(run: () => void, durability: Durability = 'normal'): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`state ${this.info.location} is closed`));
    if (this.info.readOnly) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const queue = this.queues[durability];
      queue.push({ run, resolve, reject });
      if (queue.length >= BATCH) this.commitQueue(durability);
      else if (durability === 'normal') this.immediate ??= setImmediate(() => this.commitQueue('normal'));
      // fsynced commits are gathered for a moment: rule state recorded per artifact costs one fsync
      // per FULL_DELAY_MS, not one per artifact.
      else this.timer ??= setTimeout(() => this.commitQueue('full'), FULL_DELAY_MS);
    });
  }

  /** Commits every queued write (both kinds) and settles their Promises. */
  private commit(): void {
    this.commitQueue('normal');
    this.commitQueue('full');
  }

  /** Commits the queued writes of one durability in one transaction and settles their Promises. */
  private commitQueue(durability: Durability): void {
    if (durability === 'normal') {
      if (this.immediate) clearImmediate(this.immediate);
      this.immediate = undefined;
    } else {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
    }
    const batch = this.queues[durability].splice(0);
    if (!batch.length) return;
    const full = durability === 'full';
    if (full) this.db.pragma('synchronous = FULL');
    try {
      this.db.transaction(() => {
        for (const w of batch) w.run();
      })();
      for (const w of batch) w.resolve();
    } catch {
      // One bad write must not take the others with it: replay them one by one.
      for (const w of batch) {
        try {
          this.db.transaction(w.run)();
          w.resolve();
        } catch (e) {
          this.logger.error({ err: (e as Error).message, state: this.info.location }, 'state write failed');
          w.reject(e);
        }
      }
    } finally {
      if (full) this.db.pragma('synchronous = NORMAL');
    }
  }

  /** Reads see every write issued before them. */
  private read<T>(fn: () => T): Promise<T> {
    if (this.closed) return Promise.reject(new Error(`state ${this.info.location} is closed`));
    if (this.queues.normal.length || this.queues.full.length) this.commit();
    try {
      return Promise.resolve(fn());
    } catch (err) {
      return Promise.reject(err);
    }
  }

  async flush(): Promise<void> {
    if (!this.closed) this.commit();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.commit();
    this.closed = true;
    open.delete(this);
    this.db.close();
    this.lock?.release();
  }

  // ---- destination state ----

  knownBlob(registry: string, repository: string, digest: string): Promise<Recorded | undefined> {
    return this.read(() => {
      const row = this.s.blob.get(registry, encodeDigest(digest), repository) as { at: number; size: number | null } | undefined;
      return row ? { at: row.at, size: row.size ?? undefined } : undefined;
    });
  }

  mountSources(registry: string, digest: string, limit = 8): Promise<string[]> {
    return this.read(() => (this.s.blobRepos.all(registry, encodeDigest(digest), limit) as { repository: string }[]).map((r) => r.repository));
  }

  recordBlob(registry: string, repository: string, digest: string, size: number): Promise<void> {
    const at = Date.now();
    return this.write(() => {
      const d = encodeDigest(digest);
      this.s.putRegistry.run(registry);
      this.s.putBlob.run(registry, d, repository, size, at);
      this.s.delUpload.run(registry, repository, d);
    });
  }

  forgetBlob(registry: string, repository: string, digest: string): Promise<void> {
    return this.write(() => this.s.delBlob.run(registry, encodeDigest(digest), repository));
  }

  knownManifest(registry: string, repository: string, digest: string): Promise<Recorded | undefined> {
    return this.read(() => {
      const row = this.s.manifest.get(registry, repository, encodeDigest(digest)) as { at: number } | undefined;
      return row ? { at: row.at } : undefined;
    });
  }

  recordManifest(registry: string, repository: string, digest: string): Promise<void> {
    const at = Date.now();
    return this.write(() => {
      this.s.putRegistry.run(registry);
      this.s.putManifest.run(registry, repository, encodeDigest(digest), at);
    });
  }

  upload(registry: string, repository: string, digest: string): Promise<UploadCheckpoint | undefined> {
    return this.read(() => {
      const row = this.s.upload.get(registry, repository, encodeDigest(digest)) as { location: string; offset: number; at: number } | undefined;
      return row ? { location: row.location, offset: row.offset, at: row.at } : undefined;
    });
  }

  checkpointUpload(registry: string, repository: string, digest: string, location: string, offset: number): Promise<void> {
    const at = Date.now();
    return this.write(() => {
      this.s.putRegistry.run(registry);
      this.s.putUpload.run(registry, repository, encodeDigest(digest), location, offset, at);
    });
  }

  clearUpload(registry: string, repository: string, digest: string): Promise<void> {
    return this.write(() => this.s.delUpload.run(registry, repository, encodeDigest(digest)));
  }

  // ---- rule state ----

  private boundTo(rule: string): string | undefined {
    return (this.s.ruleDestination.get(rule) as { destination: string } | undefined)?.destination;
  }

  async *pushed(rule: string, destination: string): AsyncIterable<PushedTag> {
    this.commit();
    if (this.boundTo(rule) !== destination) return;
    let after: [string, string] = ['', ''];
    for (;;) {
      const rows = this.s.ruleTagsPage.all(rule, after[0], after[0], after[1], PAGE) as RuleTagRow[];
      for (const r of rows) yield fromRow(r);
      if (rows.length < PAGE) return;
      const last = rows[rows.length - 1]!;
      after = [last.source_repository, last.source_tag];
    }
  }

  async *pushedIn(rule: string, destination: string, sourceRepository: string): AsyncIterable<PushedTag> {
    this.commit();
    if (this.boundTo(rule) !== destination) return;
    let after = '';
    for (;;) {
      const rows = this.s.ruleTagsOfRepository.all(rule, sourceRepository, after, PAGE) as RuleTagRow[];
      for (const r of rows) yield fromRow(r);
      if (rows.length < PAGE) return;
      after = rows[rows.length - 1]!.source_tag;
    }
  }

  async *pushedRepositories(rule: string, destination: string): AsyncIterable<string> {
    this.commit();
    if (this.boundTo(rule) !== destination) return;
    let after = '';
    for (;;) {
      const rows = this.s.ruleRepositories.all(rule, after, PAGE) as { source_repository: string }[];
      for (const r of rows) yield r.source_repository;
      if (rows.length < PAGE) return;
      after = rows[rows.length - 1]!.source_repository;
    }
  }

  pushedManifest(rule: string, destination: string, repository: string, digest: string): Promise<PushedTag[]> {
    return this.read(() => {
      if (this.boundTo(rule) !== destination) return [];
      return (this.s.ruleTagsByManifest.all(rule, repository, encodeDigest(digest)) as RuleTagRow[]).map(fromRow);
    });
  }

  recordPushed(rule: string, destination: string, tags: PushedTag[]): Promise<void> {
    return this.write(() => {
      this.rebind(rule, destination);
      for (const t of tags) this.s.putRuleTag.run(rule, t.sourceRepository, t.sourceTag, t.repository, t.tag, encodeDigest(t.digest));
    }, 'full');
  }

  forgetPushed(rule: string, destination: string, sourceRepository: string, sourceTag: string): Promise<void> {
    return this.write(() => {
      if (this.boundTo(rule) === destination) this.s.delRuleTag.run(rule, sourceRepository, sourceTag);
    }, 'full');
  }

  /** A rule pointed at another destination starts with a clean slate: never delete elsewhere. */
  private rebind(rule: string, destination: string): void {
    const bound = this.boundTo(rule);
    if (bound === destination) return;
    if (bound !== undefined) this.s.delRuleTags.run(rule);
    this.s.putRuleDestination.run(rule, destination);
  }

  // ---- execution history ----

  lastExecutionId(): Promise<number> {
    return this.read(() => {
      const row = this.s.lastExecution.get() as { id: number | null };
      const recorded = Number((this.s.getMeta.get('lastExecutionId') as { value: string } | undefined)?.value ?? 0);
      return Math.max(row.id ?? 0, recorded);
    });
  }

  allocateExecutionId(): Promise<number> {
    let id = 0;
    // A write, so it is ordered with the saves before it and durable when it settles.
    return this.write(() => {
      const row = this.s.lastExecution.get() as { id: number | null };
      const recorded = Number((this.s.getMeta.get('lastExecutionId') as { value: string } | undefined)?.value ?? 0);
      id = Math.max(row.id ?? 0, recorded) + 1;
      this.s.maxMeta.run('lastExecutionId', String(id));
    }, 'full').then(() => id);
  }

  executions(opts: ExecutionQuery = {}): Promise<Array<Omit<StoredExecution, 'detail'>>> {
    return this.read(() => {
      // The status filter is applied here: the local history is small (daemon.historyLimit rows).
      const statuses = opts.statuses && new Set(opts.statuses);
      const limit = statuses ? -1 : (opts.limit ?? -1);
      let rows = (opts.rule === undefined ? this.s.executions.all(limit) : this.s.executionsOfRule.all(opts.rule, limit)) as ExecutionRow[];
      if (statuses) rows = rows.filter((r) => statuses.has(r.status)).slice(0, opts.limit ?? Infinity);
      return rows.map((r) => ({ id: r.id, rule: r.rule, status: r.status, summary: JSON.parse(r.summary) as unknown }));
    });
  }

  execution(id: number): Promise<StoredExecution | undefined> {
    return this.read(() => {
      const r = this.s.execution.get(id) as (ExecutionRow & { detail: string | null }) | undefined;
      if (!r) return undefined;
      return { id: r.id, rule: r.rule, status: r.status, summary: JSON.parse(r.summary) as unknown, detail: r.detail === null ? undefined : (JSON.parse(r.detail) as unknown) };
    });
  }

  saveExecution(e: StoredExecution): Promise<void> {
    // Serialized now: the caller may change its object before the commit.
    const summary = JSON.stringify(e.summary);
    const detail = e.detail === undefined ? null : JSON.stringify(e.detail);
    return this.write(() => {
      this.s.putExecution.run(e.id, e.rule, e.status, summary, detail);
      this.s.maxMeta.run('lastExecutionId', String(e.id));
    }, 'full');
  }

  deleteExecutions(ids: number[]): Promise<void> {
    return this.write(() => {
      for (const id of ids) this.s.delExecution.run(id);
    }, 'full');
  }
}

interface RuleTagRow {
  source_repository: string;
  source_tag: string;
  repository: string;
  tag: string;
  digest: Buffer | string;
}

interface ExecutionRow {
  id: number;
  rule: string;
  status: string;
  summary: string;
}

function fromRow(r: RuleTagRow): PushedTag {
  return { sourceRepository: r.source_repository, sourceTag: r.source_tag, repository: r.repository, tag: r.tag, digest: decodeDigest(r.digest) };
}

function prepare(db: Database.Database) {
  return {
    putRegistry: db.prepare('INSERT OR IGNORE INTO registries (key) VALUES (?)'),
    blob: db.prepare(`SELECT at, size FROM blobs WHERE registry = ${REGISTRY_ID} AND digest = ? AND repository = ?`),
    blobRepos: db.prepare(`SELECT repository FROM blobs WHERE registry = ${REGISTRY_ID} AND digest = ? ORDER BY at DESC LIMIT ?`),
    putBlob: db.prepare(`INSERT OR REPLACE INTO blobs (registry, digest, repository, size, at) VALUES (${REGISTRY_ID}, ?, ?, ?, ?)`),
    delBlob: db.prepare(`DELETE FROM blobs WHERE registry = ${REGISTRY_ID} AND digest = ? AND repository = ?`),
    manifest: db.prepare(`SELECT at FROM manifests WHERE registry = ${REGISTRY_ID} AND repository = ? AND digest = ?`),
    putManifest: db.prepare(`INSERT OR REPLACE INTO manifests (registry, repository, digest, at) VALUES (${REGISTRY_ID}, ?, ?, ?)`),
    upload: db.prepare(`SELECT location, offset, at FROM uploads WHERE registry = ${REGISTRY_ID} AND repository = ? AND digest = ?`),
    putUpload: db.prepare(`INSERT OR REPLACE INTO uploads (registry, repository, digest, location, offset, at) VALUES (${REGISTRY_ID}, ?, ?, ?, ?, ?)`),
    delUpload: db.prepare(`DELETE FROM uploads WHERE registry = ${REGISTRY_ID} AND repository = ? AND digest = ?`),
    ruleDestination: db.prepare('SELECT destination FROM rule_destinations WHERE rule = ?'),
    putRuleDestination: db.prepare('INSERT OR REPLACE INTO rule_destinations (rule, destination) VALUES (?, ?)'),
    ruleTagsPage: db.prepare(
      `SELECT source_repository, source_tag, repository, tag, digest FROM rule_tags
       WHERE rule = ? AND (source_repository > ? OR (source_repository = ? AND source_tag > ?))
       ORDER BY source_repository, source_tag LIMIT ?`,
    ),
    ruleTagsOfRepository: db.prepare(
      `SELECT source_repository, source_tag, repository, tag, digest FROM rule_tags
       WHERE rule = ? AND source_repository = ? AND source_tag > ? ORDER BY source_tag LIMIT ?`,
    ),
    // DISTINCT over the primary key's prefix: an index walk, no sort.
    ruleRepositories: db.prepare('SELECT DISTINCT source_repository FROM rule_tags WHERE rule = ? AND source_repository > ? ORDER BY source_repository LIMIT ?'),
    ruleTagsByManifest: db.prepare('SELECT source_repository, source_tag, repository, tag, digest FROM rule_tags WHERE rule = ? AND repository = ? AND digest = ?'),
    putRuleTag: db.prepare('INSERT OR REPLACE INTO rule_tags (rule, source_repository, source_tag, repository, tag, digest) VALUES (?, ?, ?, ?, ?, ?)'),
    delRuleTag: db.prepare('DELETE FROM rule_tags WHERE rule = ? AND source_repository = ? AND source_tag = ?'),
    delRuleTags: db.prepare('DELETE FROM rule_tags WHERE rule = ?'),
    lastExecution: db.prepare('SELECT max(id) AS id FROM executions'),
    executions: db.prepare('SELECT id, rule, status, summary FROM executions ORDER BY id DESC LIMIT ?'),
    executionsOfRule: db.prepare('SELECT id, rule, status, summary FROM executions WHERE rule = ? ORDER BY id DESC LIMIT ?'),
    execution: db.prepare('SELECT id, rule, status, summary, detail FROM executions WHERE id = ?'),
    putExecution: db.prepare('INSERT OR REPLACE INTO executions (id, rule, status, summary, detail) VALUES (?, ?, ?, ?, ?)'),
    delExecution: db.prepare('DELETE FROM executions WHERE id = ?'),
    getMeta: db.prepare('SELECT value FROM meta WHERE key = ?'),
    maxMeta: db.prepare(
      `INSERT INTO meta (key, value) VALUES (?, ?)
       ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE CAST(excluded.value AS INTEGER) > CAST(meta.value AS INTEGER)`,
    ),
  };
}

function migrate(db: Database.Database): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > SCHEMA_VERSION) {
    throw new Error(`the state database was written by a newer Ferry (schema ${version}, this one knows ${SCHEMA_VERSION})`);
  }
  db.transaction(() => {
    if (version === 1) db.exec(MIGRATE_1_TO_2);
    db.exec(SCHEMA);
    if (version === 1) db.exec(MIGRATE_1_TO_2_COPY);
    if (version < SCHEMA_VERSION) db.pragma(`user_version = ${SCHEMA_VERSION}`);
  })();
}

const CORRUPT = new Set(['SQLITE_NOTADB', 'SQLITE_CORRUPT']);

function openWritable(file: string, logger: Logger): Database.Database {
  try {
    return configure(file);
  } catch (err) {
    if (!CORRUPT.has((err as { code?: string }).code ?? '')) throw err;
    const aside = `${file}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    for (const suffix of ['', '-wal', '-shm']) if (existsSync(file + suffix)) renameSync(file + suffix, aside + suffix);
    logger.error(
      { state: file, copy: aside, err: (err as Error).message },
      'the state database is corrupt: kept a copy and started a new one (the next run re-checks the destinations; deleteRemote forgets what earlier runs pushed)',
    );
    return configure(file);
  }
}

function configure(file: string): Database.Database {
  // Created 0600 before SQLite opens it: SQLite gives the -wal and -shm files the database's mode.
  closeSync(openSync(file, 'a', 0o600));
  chmodSync(file, 0o600);
  const db = new Database(file);
  try {
    db.pragma('busy_timeout = 5000');
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    // 16 MiB of page cache (SQLite's default is 2 MiB): random-key inserts into big tables stay in memory.
    db.pragma('cache_size = -16384');
    migrate(db);
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

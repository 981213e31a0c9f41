// Execution history, stored in the state database (executions table): a summary per execution for
// lists, and the whole record with its artifact-level log, written when it is queued, starts and
// finishes. Memory holds the retained executions without their artifact-level logs; one execution's
// log is read back from the database on request. Retention: the newest `daemon.historyLimit`
// finished executions. The executions/ directory of earlier versions (one JSON file per execution)
// is imported at load, then moved aside.
//
// Shared (daemon replicas on one PostgreSQL state): ids come from the database, memory holds what this
// replica runs (and the finished history found at start), and lists and look-ups read the database
// too, so every replica shows the executions of all of them. Retention is applied to the database.
import { existsSync, readFileSync, readdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import type { ExecutionHistory } from '../state/types.js';
import { type Execution, FINISHED } from './execution.js';

const LEGACY_DIR = 'executions';
const FINISHED_LIST = [...FINISHED];
const UNFINISHED_LIST = ['queued', 'running'];

export interface HistoryOptions {
  /** Other daemon replicas write the same history (PostgreSQL state). */
  shared?: boolean | undefined;
  /** This replica's id, stored with its executions when shared. */
  replica?: string | undefined;
}

export interface HistoryQuery {
  rule?: string | undefined;
  status?: string | undefined;
  limit: number;
}
const FILE = /^(\d+)\.json$/;

export class History {
  /** Executions by id, without `items` and `deletions` once finished (those stay in the database). */
  private readonly executions = new Map<number, Execution>();
  private readonly writes = new Map<number, Promise<void>>();
  private lastId = 0;

  constructor(
    private readonly store: ExecutionHistory,
    private limit: number,
    private readonly logger: Logger,
    private readonly opts: HistoryOptions = {},
  ) {}

  get shared(): boolean {
    return !!this.opts.shared;
  }

  /**
   * Reads the retained executions (summaries only) from the store, importing first the executions/
   * directory an earlier version left in `stateDir` (unreadable files are logged and skipped).
   */
  async load(stateDir?: string): Promise<void> {
    if (stateDir) await this.importLegacy(join(stateDir, LEGACY_DIR));
    this.lastId = Math.max(this.lastId, await this.store.lastExecutionId());
    for (const row of await this.store.executions()) {
      // Shared: unfinished executions are other replicas' (this process is new); the leader picks up
      // those of replicas that died (orphans()).
      if (this.shared && !FINISHED.has(row.status as Execution['status'])) continue;
      // Unfinished executions are kept whole (markInterrupted saves them back whole).
      const e = FINISHED.has(row.status as Execution['status']) ? (row.summary as Execution) : (((await this.store.execution(row.id))?.detail as Execution | undefined) ?? (row.summary as Execution));
      this.executions.set(row.id, e);
      this.lastId = Math.max(this.lastId, row.id);
    }
    this.prune();
  }

  private async importLegacy(dir: string): Promise<void> {
    if (!existsSync(dir)) return;
    let imported = 0;
    for (const name of readdirSync(dir)) {
      const m = FILE.exec(name);
      if (!m) continue;
      try {
        const e = JSON.parse(readFileSync(join(dir, name), 'utf8')) as Execution;
        if (typeof e.id !== 'number' || typeof e.rule !== 'string') throw new Error('not an execution record');
        await this.store.saveExecution({ id: e.id, rule: e.rule, status: e.status, summary: { ...e, items: [], deletions: [] }, detail: e });
        imported++;
      } catch (err) {
        this.logger.warn({ file: join(dir, name), err: (err as Error).message }, 'skipping unreadable history file');
      }
      this.lastId = Math.max(this.lastId, Number(m[1]));
    }
    let aside = `${dir}.imported`;
    for (let i = 1; existsSync(aside); i++) aside = `${dir}.imported.${i}`;
    renameSync(dir, aside);
    this.logger.info({ dir, imported, movedTo: aside }, 'imported the execution history into the state database');
  }

  setLimit(limit: number): void {
    this.limit = limit;
    this.prune();
  }

  nextId(): number {
    return ++this.lastId;
  }

  /** A new id: from the database when shared (unique across replicas), else the local numbering. */
  async allocateId(): Promise<number> {
    if (!this.shared) return this.nextId();
    const id = await this.store.allocateExecutionId();
    this.lastId = Math.max(this.lastId, id);
    return id;
  }

  /**
   * Executions for the API, newest first: the memory's, and when shared the database's too (other
   * replicas' runs); this replica's own copies are the freshest of its runs.
   */
  async query(q: HistoryQuery): Promise<{ total: number; executions: Execution[] }> {
    const matches = (e: Execution) => (!q.rule || e.rule === q.rule) && (!q.status || e.status === q.status);
    const byId = new Map<number, Execution>();
    if (this.shared) {
      for (const row of await this.store.executions({ rule: q.rule, statuses: q.status ? [q.status] : undefined })) byId.set(row.id, row.summary as Execution);
    }
    for (const e of this.executions.values()) if (matches(e)) byId.set(e.id, light(e));
    const all = [...byId.values()].filter(matches).sort((a, b) => b.id - a.id);
    return { total: all.length, executions: all.slice(0, q.limit) };
  }

  /**
   * Unfinished executions of other replicas, and interrupted ones nobody resumed yet, as summaries
   * (shared history only): the leader checks whether their replica still lives, then reads whole
   * (whole()) only those it takes over.
   */
  async foreign(): Promise<Execution[]> {
    if (!this.shared) return [];
    const rows = await this.store.executions({ statuses: [...UNFINISHED_LIST, 'interrupted'] });
    const found: Execution[] = [];
    for (const row of rows) {
      const summary = row.summary as Execution;
      // This replica's own, and those it already took over (their writes may still be on the way).
      const here = this.executions.get(row.id);
      if (summary.replica === this.opts.replica || (here && (here.replica === this.opts.replica || here.resumedBy !== undefined))) continue;
      if (row.status === 'interrupted' && summary.resumedBy !== undefined) continue;
      found.push(summary);
    }
    return found;
  }

  /** The whole record of an execution in the database (with its request and artifact-level log). */
  async whole(e: Execution): Promise<Execution> {
    return ((await this.store.execution(e.id))?.detail as Execution | undefined) ?? e;
  }

  /** Takes over an execution of a replica that died: marked interrupted (if unfinished) and kept here. */
  adopt(e: Execution, reason: string): void {
    if (!FINISHED.has(e.status)) {
      e.status = 'interrupted';
      e.finishedAt ??= new Date().toISOString();
      e.errors = [...e.errors, reason];
    }
    this.executions.set(e.id, e);
    this.save(e);
  }

  /** All executions (newest first), without artifact-level logs. */
  list(): Execution[] {
    return [...this.executions.values()].sort((a, b) => b.id - a.id);
  }

  /** An execution without its artifact-level log. */
  peek(id: number): Execution | undefined {
    return this.executions.get(id);
  }

  /**
   * Finished executions of `rule` with their artifact-level logs, newest first, read one at a time
   * (for the rare look-ups that need old logs, such as which digest a deleted artifact became).
   */
  async *withItems(rule: string): AsyncIterable<Execution> {
    for (const e of this.list()) {
      if (e.rule !== rule || !FINISHED.has(e.status)) continue;
      const full = await this.get(e.id);
      if (full) yield full;
    }
  }

  /** An execution with its artifact-level log, read back from the database. */
  async get(id: number): Promise<Execution | undefined> {
    if (!this.executions.has(id)) {
      if (!this.shared) return undefined;
      // Another replica's execution (or one this process never loaded).
      const row = await this.store.execution(id);
      return row ? ((row.detail as Execution | undefined) ?? (row.summary as Execution)) : undefined;
    }
    await this.writes.get(id);
    try {
      const row = await this.store.execution(id);
      return (row?.detail as Execution | undefined) ?? this.executions.get(id);
    } catch {
      return this.executions.get(id);
    }
  }

  /**
   * Executions a previous process left queued or running: marked interrupted (and saved) so that the
   * daemon can run their rules again.
   */
  markInterrupted(reason: string): Execution[] {
    const found: Execution[] = [];
    for (const e of this.executions.values()) {
      if (FINISHED.has(e.status)) continue;
      e.status = 'interrupted';
      e.finishedAt ??= new Date().toISOString();
      e.errors = [...e.errors, reason];
      found.push(e);
    }
    // The in-memory copies of unfinished executions are complete (nothing was dropped), so save them whole.
    for (const e of found) this.save(e);
    return found;
  }

  /** Records the execution's current state (asynchronously; writes of one execution never reorder). */
  save(e: Execution): void {
    // Serialized now: the runner goes on changing its object.
    if (this.shared) e.replica ??= this.opts.replica;
    const detail = JSON.parse(JSON.stringify(e)) as Execution;
    const summary: Execution = { ...detail, items: [], deletions: [] };
    this.executions.set(e.id, FINISHED.has(e.status) ? light(e) : e);
    this.chain(e.id, () => this.store.saveExecution({ id: e.id, rule: e.rule, status: e.status, summary, detail }), 'could not write execution history');
    if (FINISHED.has(e.status)) this.prune();
  }

  /** Waits for pending writes (shutdown, tests). */
  async flush(): Promise<void> {
    while (this.writes.size) await Promise.all([...this.writes.values()]);
  }

  private chain(id: number, write: () => Promise<void>, failure: string): void {
    const previous = this.writes.get(id) ?? Promise.resolve();
    const next = previous
      .then(write)
      .catch((err: unknown) => this.logger.error({ execution: id, err: (err as Error).message }, failure))
      .finally(() => {
        if (this.writes.get(id) === next) this.writes.delete(id);
      });
    this.writes.set(id, next);
  }

  private prune(): void {
    const finished = this.list().filter((e) => FINISHED.has(e.status));
    for (const e of finished.slice(this.limit)) {
      this.executions.delete(e.id);
      this.chain(e.id, () => this.store.deleteExecutions([e.id]), 'could not prune execution history');
    }
    // Shared: the other replicas' executions count too, and the database holds them all.
    if (this.shared) {
      this.chain(
        PRUNE_CHAIN,
        async () => {
          const old = (await this.store.executions({ statuses: FINISHED_LIST })).slice(this.limit).map((e) => e.id);
          if (old.length) await this.store.deleteExecutions(old);
        },
        'could not prune execution history',
      );
    }
  }
}

/** The write chain of store-wide pruning (no execution has id 0). */
const PRUNE_CHAIN = 0;

/** The in-memory copy of a finished execution: the artifact-level log stays in the database. */
function light(e: Execution): Execution {
  if (!FINISHED.has(e.status)) return e;
  return { ...e, items: [], deletions: [] };
}

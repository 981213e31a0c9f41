// Execution history in `<transfer.stateDir>/executions/`: one JSON file per execution, written
// atomically (temp file + rename) when it is queued, starts and finishes, so a crash leaves every file
// whole. Memory holds the executions without their artifact-level logs; one execution's log is read
// back from its file on request. Retention: the newest `daemon.historyLimit` finished executions.
import { mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { type Execution, FINISHED } from './execution.js';

const FILE = /^(\d+)\.json$/;

export class History {
  /** Executions by id, without `items` and `deletions` once finished (those stay on disk). */
  private readonly executions = new Map<number, Execution>();
  private readonly writes = new Map<number, Promise<void>>();
  private lastId = 0;

  private constructor(
    readonly dir: string,
    private limit: number,
    private readonly logger: Logger,
  ) {}

  /** Opens (creating) the history in `stateDir` and loads it; unreadable files are logged and skipped. */
  static open(stateDir: string, limit: number, logger: Logger): History {
    const dir = join(stateDir, 'executions');
    mkdirSync(dir, { recursive: true });
    const history = new History(dir, limit, logger);
    for (const name of readdirSync(dir)) {
      const m = FILE.exec(name);
      if (!m) continue;
      try {
        const e = JSON.parse(readFileSync(join(dir, name), 'utf8')) as Execution;
        if (typeof e.id !== 'number' || typeof e.rule !== 'string') throw new Error('not an execution record');
        history.executions.set(e.id, light(e));
        history.lastId = Math.max(history.lastId, e.id);
      } catch (err) {
        logger.warn({ file: join(dir, name), err: (err as Error).message }, 'skipping unreadable history file');
        history.lastId = Math.max(history.lastId, Number(m[1]));
      }
    }
    return history;
  }

  setLimit(limit: number): void {
    this.limit = limit;
    this.prune();
  }

  nextId(): number {
    return ++this.lastId;
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
   * Finished executions of `rule` with their artifact-level logs, newest first, read from disk one at a
   * time (for the rare look-ups that need old logs, such as which digest a deleted artifact became).
   */
  async *withItems(rule: string): AsyncIterable<Execution> {
    for (const e of this.list()) {
      if (e.rule !== rule || !FINISHED.has(e.status)) continue;
      const full = await this.get(e.id);
      if (full) yield full;
    }
  }

  /** An execution with its artifact-level log, read back from disk. */
  async get(id: number): Promise<Execution | undefined> {
    if (!this.executions.has(id)) return undefined;
    await this.writes.get(id);
    try {
      return JSON.parse(await readFile(this.file(id), 'utf8')) as Execution;
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
    const snapshot = JSON.stringify(e);
    this.executions.set(e.id, FINISHED.has(e.status) ? light(e) : e);
    const previous = this.writes.get(e.id) ?? Promise.resolve();
    const next = previous
      .then(() => writeAtomic(this.file(e.id), snapshot))
      .catch((err: unknown) => this.logger.error({ execution: e.id, err: (err as Error).message }, 'could not write execution history'))
      .finally(() => {
        if (this.writes.get(e.id) === next) this.writes.delete(e.id);
      });
    this.writes.set(e.id, next);
    if (FINISHED.has(e.status)) this.prune();
  }

  /** Waits for pending writes (shutdown, tests). */
  async flush(): Promise<void> {
    while (this.writes.size) await Promise.all([...this.writes.values()]);
  }

  private prune(): void {
    const finished = this.list().filter((e) => FINISHED.has(e.status));
    for (const e of finished.slice(this.limit)) {
      this.executions.delete(e.id);
      const previous = this.writes.get(e.id) ?? Promise.resolve();
      const next = previous.then(() => rm(this.file(e.id), { force: true })).catch(() => undefined);
      this.writes.set(e.id, next);
      void next.finally(() => {
        if (this.writes.get(e.id) === next) this.writes.delete(e.id);
      });
    }
  }

  private file(id: number): string {
    return join(this.dir, `${id}.json`);
  }
}

/** The in-memory copy of a finished execution: the artifact-level log stays on disk. */
function light(e: Execution): Execution {
  if (!FINISHED.has(e.status)) return e;
  return { ...e, items: [], deletions: [] };
}

async function writeAtomic(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, file);
}

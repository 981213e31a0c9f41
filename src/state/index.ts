// Opens the process's state: SQLite in the state directory (the default), in memory without one.
// With state.url, a PostgreSQL database instead (postgres.ts), behind the same StateStore interface.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { PostgresState } from './postgres.js';
import { DB_FILE, SqliteState } from './sqlite.js';
import type { StateStore } from './types.js';

export { StateLockedError } from './types.js';
export { StateDatabaseError } from './postgres.js';
export type { DestinationState, ExecutionHistory, ExecutionQuery, PushedTag, Recorded, RuleState, StateInfo, StateStore, StoredExecution, UploadCheckpoint } from './types.js';

export interface OpenStateOptions {
  /** The state directory; undefined keeps the state in memory (tests, one-off copies). */
  stateDir?: string | undefined;
  /**
   * Read without writing (dry runs, `ferry plan`): the directory's database opened read-only, no
   * lock taken, writes dropped; a directory without a database is read into memory.
   */
  readOnly?: boolean | undefined;
  logger?: Logger | undefined;
  /** state.url: a PostgreSQL database instead of the directory (shared by several processes). */
  url?: string | undefined;
}

export function openState(opts: OpenStateOptions = {}): StateStore {
  const { stateDir, logger } = opts;
  if (opts.url) return new PostgresState(opts.url, { logger, readOnly: opts.readOnly });
  if (!stateDir) return SqliteState.memory({ logger });
  if (opts.readOnly) {
    if (existsSync(join(stateDir, DB_FILE))) return SqliteState.open(stateDir, { logger, readOnly: true });
    return SqliteState.memory({ logger, importFrom: stateDir });
  }
  return SqliteState.open(stateDir, { logger });
}

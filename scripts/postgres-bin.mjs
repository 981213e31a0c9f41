// Where the PostgreSQL server binaries are, for scripts/ensure-postgres.mjs (installs them when
// missing) and test/helpers/postgres.ts (starts a throw-away server): one answer for both.
// Plain Node, no dependencies: it runs before anything is compiled.
import { accessSync, constants, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

export function isExecutable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The newest /usr/lib/postgresql/<major>/bin with initdb and postgres, or FERRY_PG_BIN. */
export function postgresBinDir() {
  if (process.env.FERRY_PG_BIN) return process.env.FERRY_PG_BIN;
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const majors = readdirSync(root).filter((d) => /^\d+$/.test(d)).sort((a, b) => Number(b) - Number(a));
  return majors.map((m) => join(root, m, 'bin')).find((d) => isExecutable(join(d, 'initdb')) && isExecutable(join(d, 'postgres')));
}

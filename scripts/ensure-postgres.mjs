#!/usr/bin/env node
// Makes sure a PostgreSQL server binary is present for the tests of the PostgreSQL state
// (test/helpers/postgres.ts starts a throw-away server from it): `npm test` runs this first.
//
// Present: exit 0 at once, printing nothing. Missing: install Debian's `postgresql` package with
// apt-get when running as root (telling stderr what it does); otherwise exit 1 with the command to
// run. FERRY_PG_BIN names a directory holding initdb and postgres (another installation).
// Plain Node, no dependencies: it runs before anything is compiled.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { isExecutable, postgresBinDir } from './postgres-bin.mjs';

function fail(message) {
  process.stderr.write(`ensure-postgres: ${message}\n`);
  process.exit(1);
}

const manual = 'The PostgreSQL state tests need a PostgreSQL server (Debian package "postgresql").\n  Install it with:  sudo apt-get update && sudo apt-get install -y postgresql';
const found = postgresBinDir();
if (found && isExecutable(join(found, 'initdb'))) process.exit(0);
if (process.env.FERRY_PG_BIN) fail(`FERRY_PG_BIN=${process.env.FERRY_PG_BIN} has no executable initdb.`);
if (process.platform !== 'linux' || typeof process.getuid !== 'function' || process.getuid() !== 0 || !isExecutable('/usr/bin/apt-get')) fail(`no PostgreSQL server found.\n${manual}`);

const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
function run(args) {
  process.stderr.write(`ensure-postgres: PostgreSQL is missing; running: apt-get ${args.join(' ')}\n`);
  const r = spawnSync('apt-get', args, { stdio: ['ignore', 2, 2], env });
  if (r.error) fail(`apt-get could not start: ${r.error.message}`);
  if (r.status !== 0) fail(`apt-get ${args.join(' ')} failed with exit code ${r.status}.\n${manual}`);
}
run(['update']);
// The package's post-install creates and starts a cluster of its own; the tests do not use it.
run(['install', '-y', '--no-install-recommends', 'postgresql']);
if (!postgresBinDir()) fail(`installed postgresql, but no initdb under /usr/lib/postgresql/*/bin.\n${manual}`);

// A throw-away PostgreSQL server for the tests of the PostgreSQL state, started the way the registry
// helpers start docker-registry: Debian's server binaries (scripts/ensure-postgres.mjs installs the
// package), `initdb` into a temporary directory as the `postgres` user (initdb refuses root), a free
// loopback port, trust authentication on loopback only, fsync off (a test cluster), removed by stop().
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { postgresBinDir } from '../../scripts/postgres-bin.mjs';
import { LOOPBACK, getFreePort } from './ports.js';

export interface TestPostgres {
  /** postgres://ferry:ferry@127.0.0.1:PORT/ferry */
  readonly url: string;
  readonly port: number;
  /** A fresh database on the same server (for a test of its own). */
  createDatabase(name: string): Promise<string>;
  /** Stops the server (SIGKILL when `crash`, like a database that goes away) and, unless `keep`, removes its files. */
  stop(opts?: { crash?: boolean; keep?: boolean }): Promise<void>;
  /** Starts it again on the same port and data (after stop({ keep: true })). */
  restart(): Promise<void>;
}

export { postgresBinDir };

/** True where the tests can start a server (the binaries exist, and as root a `postgres` user to run them). */
export function postgresAvailable(): boolean {
  return postgresBinDir() !== undefined;
}

function asPostgresUser(): { uid: number; gid: number } | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
  const id = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (id.status !== 0) throw new Error('running as root but there is no "postgres" user to run initdb/postgres as (install the postgresql package)');
  return { uid: Number(id.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

async function waitReady(url: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`postgres exited with ${child.exitCode}: ${log().slice(-2000)}`);
    const c = new pg.Client({ connectionString: url });
    try {
      await c.connect();
      await c.end();
      return;
    } catch {
      await c.end().catch(() => undefined);
      if (Date.now() > deadline) throw new Error(`postgres did not accept connections within 30 s: ${log().slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

export async function startPostgres(): Promise<TestPostgres> {
  const bin = postgresBinDir();
  if (!bin) throw new Error('no PostgreSQL server binaries (run scripts/ensure-postgres.mjs)');
  const user = asPostgresUser();
  const dir = mkdtempSync(join(tmpdir(), 'ferry-pg-'));
  const data = join(dir, 'data');
  if (user) chownSync(dir, user.uid, user.gid);
  const ids = user ? { uid: user.uid, gid: user.gid } : {};
  const init = spawnSync(join(bin, 'initdb'), ['-D', data, '-U', 'ferry', '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C'], { ...ids, encoding: 'utf8' });
  if (init.status !== 0) throw new Error(`initdb failed (${init.status}): ${init.stderr || init.stdout}`);
  const port = await getFreePort();
  const url = `postgres://ferry:ferry@${LOOPBACK}:${port}/postgres`;
  let child: ChildProcess | undefined;
  let output = '';
  const start = async (): Promise<void> => {
    output = '';
    child = spawn(join(bin, 'postgres'), ['-D', data, '-p', String(port), '-k', dir, '-c', `listen_addresses=${LOOPBACK}`, '-c', 'fsync=off', '-c', 'max_connections=200'], {
      ...ids,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
    await waitReady(url, child, () => output);
  };
  await start();
  const db = await createDb(url, 'ferry');
  return {
    url: db,
    port,
    createDatabase: (name) => createDb(url, name),
    async stop(opts = {}) {
      const c = child;
      if (c && c.exitCode === null) {
        const exited = new Promise((r) => c.once('exit', r));
        c.kill(opts.crash ? 'SIGKILL' : 'SIGINT');
        await exited;
      }
      if (!opts.keep) rmSync(dir, { recursive: true, force: true });
    },
    restart: start,
  };
}

async function createDb(serverUrl: string, name: string): Promise<string> {
  const c = new pg.Client({ connectionString: serverUrl });
  await c.connect();
  try {
    await c.query(`CREATE DATABASE "${name.replace(/"/g, '')}"`);
  } finally {
    await c.end();
  }
  const u = new URL(serverUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

// The SQLite state: look-ups, persistence, the lock, permissions, durability, corrupt files, and the
// import of earlier versions' files (journal.jsonl, rules/*.json).
import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { openState } from '../../src/state/index.js';
import { LOCK_FILE } from '../../src/state/lock.js';
import { DB_FILE, SqliteState } from '../../src/state/sqlite.js';
import { StateLockedError } from '../../src/state/types.js';
import { describeStateContract } from './contract.js';

const HOLDER = fileURLToPath(new URL('./holder.ts', import.meta.url));
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'ferry-state-'));
}

/** A logger whose lines the test can read. */
function captureLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { logger, lines };
}

/** Starts holder.ts on `dir`; resolves once it printed "ready". */
function holder(dir: string, digest?: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', HOLDER, dir, ...(digest ? [digest] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve(child));
    child.on('exit', (code) => reject(new Error(`holder exited ${code}: ${err}`)));
  });
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())));
}

describe('SqliteState', () => {
  it('keeps one row per record however often it is re-recorded (no growth over months of runs)', async () => {
    const dir = tempDir();
    const s = SqliteState.open(dir);
    for (let i = 0; i < 50; i++) {
      void s.recordBlob('d@h', 'a/b', 'sha256:1', 10);
      void s.checkpointUpload('d@h', 'a/b', 'sha256:2', 'http://r/v2/a/b/blobs/uploads/x', i * 100);
    }
    await s.clearUpload('d@h', 'a/b', 'sha256:2');
    const count = (t: string) => (s.db.prepare(`SELECT count(*) AS n FROM ${t}`).get() as { n: number }).n;
    expect(count('blobs')).toBe(1);
    expect(count('uploads')).toBe(0);
    await s.close();
  });

  it('uses WAL with synchronous=NORMAL, and commits rule state and history with synchronous=FULL', async () => {
    const s = SqliteState.open(tempDir());
    expect(s.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(s.db.pragma('synchronous', { simple: true })).toBe(1); // NORMAL
    const seen: number[] = [];
    const original = s.db.transaction.bind(s.db);
    s.db.transaction = ((fn: (...a: unknown[]) => unknown) =>
      original((...a: unknown[]) => {
        seen.push(s.db.pragma('synchronous', { simple: true }) as number);
        return fn(...a);
      })) as typeof s.db.transaction;
    await s.recordBlob('d@h', 'a/b', 'sha256:1', 1);
    await s.recordPushed('r', 'd@h', [{ sourceRepository: 's/a', sourceTag: 'v1', repository: 'd/a', tag: 'v1', digest: 'sha256:m' }]);
    await s.saveExecution({ id: 1, rule: 'r', status: 'ok', summary: {} });
    expect(seen).toEqual([1, 2, 2]); // NORMAL, FULL, FULL
    expect(s.db.pragma('synchronous', { simple: true })).toBe(1);
    // Fsynced writes of consecutive turns (rule state recorded per artifact) share one commit.
    seen.length = 0;
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 5; i++) {
      writes.push(s.recordPushed('r', 'd@h', [{ sourceRepository: 's/a', sourceTag: `t${i}`, repository: 'd/a', tag: `t${i}`, digest: 'sha256:m' }]));
      await new Promise((r) => setImmediate(r));
    }
    await Promise.all(writes);
    expect(seen).toEqual([2]);
    await s.close();
  });

  it('a record whose write settled survives a SIGKILL of the process', async () => {
    const dir = tempDir();
    const child = await holder(dir, 'sha256:killed');
    child.kill('SIGKILL');
    await exited(child);
    const s = SqliteState.open(dir); // the dead holder's lock is taken over
    expect(await s.knownBlob('d@h', 'held/repo', 'sha256:killed')).toMatchObject({ size: 42 });
    await s.close();
  });

  it('creates the directory 0700 and its files 0600 (upload session URLs inside)', async () => {
    const dir = join(tempDir(), 'state');
    const s = SqliteState.open(dir);
    await s.checkpointUpload('d@h', 'a/b', 'sha256:1', 'http://r/v2/a/b/blobs/uploads/secret', 1);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const files = readdirSync(dir);
    expect(files).toEqual(expect.arrayContaining([DB_FILE, `${DB_FILE}-wal`, `${DB_FILE}-shm`, LOCK_FILE]));
    for (const f of files) expect([f, statSync(join(dir, f)).mode & 0o777]).toEqual([f, 0o600]);
    await s.close();
  });

  it('refuses a state directory another live process holds, naming the directory and the pid', async () => {
    const dir = tempDir();
    const child = await holder(dir);
    let error: unknown;
    try {
      SqliteState.open(dir);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(StateLockedError);
    expect((error as StateLockedError).pid).toBe(child.pid);
    expect((error as Error).message).toContain(dir);
    expect((error as Error).message).toContain(String(child.pid));
    // Dry runs read without the lock.
    const reader = openState({ stateDir: dir, readOnly: true });
    expect(reader.info.readOnly).toBe(true);
    await reader.close();
  });

  it('takes over the lock of a dead process; engines of one process share it', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, LOCK_FILE), '999999999\n'); // no such pid
    const a = SqliteState.open(dir);
    const b = SqliteState.open(dir); // same process: shared
    expect(readFileSync(join(dir, LOCK_FILE), 'utf8').split(' ')[0]!.trim()).toBe(String(process.pid));
    await a.close();
    expect(existsSync(join(dir, LOCK_FILE))).toBe(true);
    await b.recordBlob('d@h', 'a/b', 'sha256:1', 1);
    await b.close();
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
  });

  it('takes over a lock whose pid now belongs to another process (pid reused: other start time)', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, LOCK_FILE), `${process.ppid} 1\n`); // alive, but not the process that wrote the lock
    const s = SqliteState.open(dir);
    expect(readFileSync(join(dir, LOCK_FILE), 'utf8').split(' ')[0]).toBe(String(process.pid));
    await s.close();
  });

  it('a corrupt database is logged and kept aside, and a new one is started', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, DB_FILE), 'this is not a database, but it was one once'.repeat(200));
    const { logger, lines } = captureLogger();
    const s = SqliteState.open(dir, { logger });
    await s.recordBlob('d@h', 'a/b', 'sha256:1', 1);
    expect(await s.knownBlob('d@h', 'a/b', 'sha256:1')).toBeDefined();
    await s.close();
    const copies = readdirSync(dir).filter((f) => f.startsWith(`${DB_FILE}.corrupt-`));
    expect(copies).toHaveLength(1);
    expect(readFileSync(join(dir, copies[0]!), 'utf8')).toContain('this is not a database');
    const logged = lines.find((l) => String(l.msg).includes('corrupt'));
    expect(logged).toMatchObject({ level: 50, copy: join(dir, copies[0]!) });
  });

  it('dry runs read without writing: no file created, writes dropped', async () => {
    const dir = tempDir();
    const memory = openState({ stateDir: dir, readOnly: true });
    await memory.recordBlob('d@h', 'a/b', 'sha256:1', 1);
    await memory.close();
    expect(readdirSync(dir)).toEqual([]);

    const w = SqliteState.open(dir);
    await w.recordBlob('d@h', 'a/b', 'sha256:1', 1);
    await w.close();
    const r = openState({ stateDir: dir, readOnly: true });
    expect(await r.knownBlob('d@h', 'a/b', 'sha256:1')).toBeDefined();
    await r.recordBlob('d@h', 'a/b', 'sha256:2', 1);
    await r.close();
    const again = SqliteState.open(dir);
    expect(await again.knownBlob('d@h', 'a/b', 'sha256:2')).toBeUndefined();
    await again.close();
  });
});

describe('compact keys', () => {
  const d1 = `sha256:${'ab'.repeat(32)}`;
  const d2 = `sha256:${'cd'.repeat(32)}`;

  it('stores sha256 digests as 32 bytes and registry keys once, and reads them back as text', async () => {
    const dir = tempDir();
    const s = SqliteState.open(dir);
    await s.recordBlob('d@h', 'a/b', d1, 10);
    await s.recordBlob('d@h', 'a/c', d1, 10);
    await s.recordManifest('d@h', 'a/b', d2);
    await s.checkpointUpload('d@h', 'a/b', d2, 'http://r/u', 5);
    await s.recordBlob('d@h', 'a/b', 'sha512:abc', 1); // other algorithms stay text
    await s.recordPushed('r', 'd@h', [{ sourceRepository: 's/a', sourceTag: 'v1', repository: 'a/b', tag: 'v1', digest: d2 }]);
    expect(await s.knownBlob('d@h', 'a/b', d1)).toMatchObject({ size: 10 });
    expect(await s.knownBlob('d@h', 'a/b', 'sha512:abc')).toMatchObject({ size: 1 });
    expect((await s.mountSources('d@h', d1)).sort()).toEqual(['a/b', 'a/c']);
    expect(await s.knownManifest('d@h', 'a/b', d2)).toBeDefined();
    expect(await s.pushedManifest('r', 'd@h', 'a/b', d2)).toEqual([{ sourceRepository: 's/a', sourceTag: 'v1', repository: 'a/b', tag: 'v1', digest: d2 }]);
    expect(s.db.prepare('SELECT typeof(digest) AS t, length(digest) AS n FROM blobs WHERE repository = ? ORDER BY t').all('a/c')).toEqual([{ t: 'blob', n: 32 }]);
    expect((s.db.prepare('SELECT count(*) AS n FROM registries').get() as { n: number }).n).toBe(1);
    // The views show them readable (for the sqlite3 shell).
    expect(s.db.prepare('SELECT registry, repository, digest, size FROM blob_view WHERE repository = ?').all('a/c')).toEqual([{ registry: 'd@h', repository: 'a/c', digest: d1, size: 10 }]);
    expect(s.db.prepare('SELECT digest, offset FROM upload_view').all()).toEqual([{ digest: d2, offset: 5 }]);
    expect(s.db.prepare('SELECT digest FROM rule_tag_view').all()).toEqual([{ digest: d2 }]);
    await s.close();
  });

  it('migrates a schema 1 database (text keys) to compact keys, keeping every row', async () => {
    const dir = tempDir();
    const { SCHEMA: V1 } = await import('./schema-v1.js');
    const old = new Database(join(dir, DB_FILE));
    old.exec(V1);
    old.pragma('user_version = 1');
    old.prepare('INSERT INTO blobs VALUES (?, ?, ?, ?, ?)').run('d@h', d1, 'a/b', 10, 1);
    old.prepare('INSERT INTO manifests VALUES (?, ?, ?, ?)').run('d@h', 'a/b', d2, 2);
    old.prepare('INSERT INTO uploads VALUES (?, ?, ?, ?, ?, ?)').run('d@h', 'a/b', d2, 'http://r/u', 7, 3);
    old.prepare('INSERT INTO rule_destinations VALUES (?, ?)').run('r', 'd@h');
    old.prepare('INSERT INTO rule_tags VALUES (?, ?, ?, ?, ?, ?)').run('r', 's/a', 'v1', 'a/b', 'v1', d2);
    old.close();
    // A dry run cannot migrate: it reads an empty state and says so.
    const { logger, lines } = captureLogger();
    const dry = openState({ stateDir: dir, readOnly: true, logger });
    expect(await dry.knownBlob('d@h', 'a/b', d1)).toBeUndefined();
    await dry.close();
    expect(lines.find((l) => l.schema === 1)?.msg).toMatch(/another schema version/);
    const s = SqliteState.open(dir);
    expect(s.db.pragma('user_version', { simple: true })).toBe(2);
    expect(await s.knownBlob('d@h', 'a/b', d1)).toEqual({ at: 1, size: 10 });
    expect(await s.knownManifest('d@h', 'a/b', d2)).toEqual({ at: 2 });
    expect(await s.upload('d@h', 'a/b', d2)).toEqual({ location: 'http://r/u', offset: 7, at: 3 });
    expect(await s.pushedManifest('r', 'd@h', 'a/b', d2)).toHaveLength(1);
    await s.close();
  });
});

describeStateContract('SQLite', async () => {
  const dir = tempDir();
  return () => SqliteState.open(dir);
});

describe('import of earlier versions', () => {
  it('imports journal.jsonl once, then moves it aside; a torn last line does not corrupt the next record', async () => {
    const dir = tempDir();
    const lines = [
      { t: 'b', r: 'd@h', p: 'a/b', d: 'sha256:1', s: 10, at: 1 },
      { t: 'm', r: 'd@h', p: 'a/b', d: 'sha256:m', at: 2 },
      { t: 'u', r: 'd@h', p: 'a/b', d: 'sha256:2', loc: 'http://r/v2/a/b/blobs/uploads/x', off: 100, at: 3 },
      { t: 'u', r: 'd@h', p: 'a/b', d: 'sha256:3', loc: 'http://r/v2/a/b/blobs/uploads/y', off: 4096, at: 4 },
      { t: 'x', r: 'd@h', p: 'a/b', d: 'sha256:2', at: 5 },
    ];
    writeFileSync(join(dir, 'journal.jsonl'), lines.map((l) => `${JSON.stringify(l)}\n`).join(''));
    // An old version was killed mid-write, then appended its next record right after the torn one.
    appendFileSync(join(dir, 'journal.jsonl'), `{"t":"b","r":"d@h","p":"a/c","d":"sha2${JSON.stringify({ t: 'b', r: 'd@h', p: 'a/e', d: 'sha256:5', s: 5, at: 6 })}\n`);
    appendFileSync(join(dir, 'journal.jsonl'), '{"t":"b","r":"d@h","p":"a/d","d":"sha2'); // and a torn last line
    const { logger, lines: logged } = captureLogger();
    const s = SqliteState.open(dir, { logger });
    expect(await s.knownBlob('d@h', 'a/b', 'sha256:1')).toMatchObject({ size: 10, at: 1 });
    expect(await s.knownManifest('d@h', 'a/b', 'sha256:m')).toBeDefined();
    expect(await s.upload('d@h', 'a/b', 'sha256:2')).toBeUndefined();
    expect(await s.upload('d@h', 'a/b', 'sha256:3')).toMatchObject({ offset: 4096 });
    expect(await s.knownBlob('d@h', 'a/e', 'sha256:5')).toBeDefined(); // salvaged after the torn prefix
    expect(await s.mountSources('d@h', 'sha256:1')).toEqual(['a/b']);
    expect(logged.find((l) => l.msg === 'imported the resume journal into the state database')).toMatchObject({ records: 6, skipped: 1 });
    // The next record after the torn line is whole.
    await s.recordBlob('d@h', 'x/y', 'sha256:4', 1);
    await s.close();
    expect(existsSync(join(dir, 'journal.jsonl'))).toBe(false);
    expect(existsSync(join(dir, 'journal.jsonl.imported'))).toBe(true);

    const again = SqliteState.open(dir);
    expect(await again.knownBlob('d@h', 'x/y', 'sha256:4')).toMatchObject({ size: 1 });
    expect(await again.knownBlob('d@h', 'a/d', 'sha256:')).toBeUndefined();
    expect(await again.knownBlob('d@h', 'a/b', 'sha256:1')).toBeDefined();
    await again.close();
  });

  it('imports rules/*.json; an unreadable rule state is logged and a copy kept, never silently emptied', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'rules'));
    writeFileSync(join(dir, 'rules', 'good.json'), JSON.stringify({ version: 1, destination: 'd@h', entries: { 'src/a:v1': { repository: 'dst/a', tag: 'v1', digest: 'sha256:m' } } }));
    writeFileSync(join(dir, 'rules', 'torn.json'), '{"version":1,"destination":"d@h","entries":{"src/a:v1":{"repo');
    const { logger, lines } = captureLogger();
    // A dry run reads the files into memory and leaves them where they are.
    const dry = openState({ stateDir: dir, readOnly: true, logger });
    expect(await dry.pushedManifest('good', 'd@h', 'dst/a', 'sha256:m')).toHaveLength(1);
    await dry.close();
    expect(existsSync(join(dir, 'rules', 'torn.json'))).toBe(true);

    const s = SqliteState.open(dir, { logger });
    const pushed = [];
    for await (const t of s.pushed('good', 'd@h')) pushed.push(t);
    expect(pushed).toEqual([{ sourceRepository: 'src/a', sourceTag: 'v1', repository: 'dst/a', tag: 'v1', digest: 'sha256:m' }]);
    await s.close();
    expect(existsSync(join(dir, 'rules'))).toBe(false);
    expect(readFileSync(join(dir, 'rules.imported', 'torn.json.corrupt'), 'utf8')).toContain('"repo');
    const error = lines.find((l) => l.rule === 'torn' && l.level === 50);
    expect(error?.msg).toContain('unreadable rule state');
  });
});

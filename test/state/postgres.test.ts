// The PostgreSQL state (state.url) against a real PostgreSQL server started for the test
// (test/helpers/postgres.ts): the same StateStore contract as the SQLite default, schema creation by
// several processes at once, a database that goes away mid-run, and `ferry sync` on it end to end.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { Engine } from '../../src/engine/engine.js';
import { openState } from '../../src/state/index.js';
import { PostgresState, StateDatabaseError, redactUrl } from '../../src/state/postgres.js';
import { type TestPostgres, postgresAvailable, startPostgres } from '../helpers/postgres.js';
import { type TestRegistry, buildImage, getManifest, pushImage, startProxy, startRegistry } from '../helpers/index.js';

let server: TestPostgres;
let dbs = 0;
const freshDb = () => server.createDatabase(`t${++dbs}`);

describe.runIf(postgresAvailable())('PostgresState', () => {
  beforeAll(async () => {
    server = await startPostgres();
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
  });

  it('records blobs, mount sources, manifests and upload checkpoints, and finds them after a reopen', async () => {
    const url = await freshDb();
    const s = new PostgresState(url);
    await s.checkpointUpload('d@h', 'a/b', 'sha256:1', 'http://r/v2/a/b/blobs/uploads/x', 1024);
    expect(await s.upload('d@h', 'a/b', 'sha256:1')).toMatchObject({ location: 'http://r/v2/a/b/blobs/uploads/x', offset: 1024 });
    // Not awaited: a read sees every write issued before it.
    void s.recordBlob('d@h', 'a/b', 'sha256:1', 10);
    void s.recordBlob('d@h', 'a/c', 'sha256:1', 10);
    void s.recordBlob('other@h', 'a/d', 'sha256:1', 10);
    void s.recordManifest('d@h', 'a/b', 'sha256:m');
    expect(await s.knownBlob('d@h', 'a/b', 'sha256:1')).toMatchObject({ size: 10 });
    expect(await s.upload('d@h', 'a/b', 'sha256:1')).toBeUndefined(); // the blob is complete: its session is done
    expect((await s.mountSources('d@h', 'sha256:1')).sort()).toEqual(['a/b', 'a/c']);
    await s.forgetBlob('d@h', 'a/c', 'sha256:1');
    await s.checkpointUpload('d@h', 'a/b', 'sha256:2', 'http://r/v2/a/b/blobs/uploads/y', 4096);
    await s.checkpointUpload('d@h', 'a/b', 'sha256:3', 'http://r/v2/a/b/blobs/uploads/z', 1);
    await s.clearUpload('d@h', 'a/b', 'sha256:3');
    await s.close();

    const again = openState({ url });
    expect(again.info).toMatchObject({ kind: 'postgres', readOnly: false });
    expect(await again.knownBlob('d@h', 'a/b', 'sha256:1')).toMatchObject({ size: 10 });
    expect(await again.knownBlob('d@h', 'a/c', 'sha256:1')).toBeUndefined();
    expect(await again.mountSources('d@h', 'sha256:1')).toEqual(['a/b']);
    expect(await again.knownManifest('d@h', 'a/b', 'sha256:m')).toBeDefined();
    expect(await again.knownManifest('d@h', 'a/c', 'sha256:m')).toBeUndefined();
    expect(await again.upload('d@h', 'a/b', 'sha256:2')).toMatchObject({ offset: 4096 });
    expect(await again.upload('d@h', 'a/b', 'sha256:3')).toBeUndefined();
    await again.close();
  });

  it('keeps rule state per destination, in pages, and starts clean when a rule points elsewhere', async () => {
    const url = await freshDb();
    const tag = (i: number, digest = `sha256:${i}`) => ({ sourceRepository: `src/r${i % 7}`, sourceTag: `v${i}`, repository: `dst/r${i % 7}`, tag: `v${i}`, digest });
    const s = new PostgresState(url);
    await s.recordPushed('r', 'd@h', Array.from({ length: 2500 }, (_, i) => tag(i)));
    await s.recordPushed('r', 'd@h', [tag(1, 'sha256:new')]);
    await s.recordPushed('other', 'd@h', [tag(1)]);
    await s.forgetPushed('r', 'd@h', 'src/r2', 'v2');
    const all = [];
    for await (const t of s.pushed('r', 'd@h')) all.push(t);
    expect(all).toHaveLength(2499);
    expect(all.find((t) => t.sourceTag === 'v1')?.digest).toBe('sha256:new');
    expect(await s.pushedManifest('r', 'd@h', 'dst/r3', 'sha256:3')).toEqual([tag(3)]);
    const elsewhere = [];
    for await (const t of s.pushed('r', 'x@elsewhere')) elsewhere.push(t);
    expect(elsewhere).toEqual([]);
    await s.recordPushed('r', 'x@elsewhere', [tag(9)]);
    const old = [];
    for await (const t of s.pushed('r', 'd@h')) old.push(t);
    expect(old).toEqual([]); // never delete at the old destination from memories of the new one
    await s.close();
  });

  it('stores the execution history, newest first, and keeps the numbering after deletions', async () => {
    const url = await freshDb();
    const s = new PostgresState(url);
    for (const id of [1, 2, 3]) await s.saveExecution({ id, rule: id === 2 ? 'b' : 'a', status: 'ok', summary: { id }, detail: { id, items: [id] } });
    expect((await s.executions()).map((e) => e.id)).toEqual([3, 2, 1]);
    expect((await s.executions({ rule: 'a', limit: 1 })).map((e) => e.id)).toEqual([3]);
    expect(await s.execution(2)).toMatchObject({ rule: 'b', summary: { id: 2 }, detail: { items: [2] } });
    await s.deleteExecutions([3]);
    expect(await s.execution(3)).toBeUndefined();
    expect(await s.lastExecutionId()).toBe(3);
    await s.close();
  });

  it('creates its schema once when several processes open a new database together; read-only stores never write', async () => {
    const url = await freshDb();
    const stores = Array.from({ length: 5 }, () => new PostgresState(url));
    await Promise.all(stores.map((s, i) => s.recordBlob('d@h', `r${i}`, 'sha256:x', 1)));
    expect((await stores[0]!.mountSources('d@h', 'sha256:x', 10)).sort()).toEqual(['r0', 'r1', 'r2', 'r3', 'r4']);
    const ro = openState({ url, readOnly: true });
    await ro.recordBlob('d@h', 'ro', 'sha256:x', 1);
    expect(await ro.knownBlob('d@h', 'ro', 'sha256:x')).toBeUndefined();
    expect(await ro.knownBlob('d@h', 'r3', 'sha256:x')).toBeDefined();
    await Promise.all([...stores, ro].map((s) => s.close()));
  });

  it('names the database, never its password, when it cannot be reached', async () => {
    const s = new PostgresState('postgres://ferry:topsecret@127.0.0.1:1/none');
    const err = await s.knownBlob('d@h', 'r', 'sha256:x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StateDatabaseError);
    expect(String((err as Error).message)).toMatch(/state database postgres:\/\/ferry@127\.0\.0\.1:1\/none: cannot connect/);
    expect(String((err as Error).message)).not.toContain('topsecret');
    expect(redactUrl('postgres://u:p@h:5432/d')).toBe('postgres://u@h:5432/d');
    await s.close();
  });
});

describe.runIf(postgresAvailable())('ferry sync on state.url', () => {
  let source: TestRegistry;
  let destination: TestRegistry;
  let pgServer: TestPostgres;

  beforeAll(async () => {
    [source, destination, pgServer] = await Promise.all([startRegistry(), startRegistry(), startPostgres()]);
    await pushImage(source, 'pg/app', '1', buildImage({ layers: [50_000, 20_000], format: 'oci' }));
    await pushImage(source, 'pg/app', '2', buildImage({ layers: [30_000], format: 'docker' }));
  }, 60_000);
  afterAll(async () => {
    await Promise.all([source?.stop(), destination?.stop(), pgServer?.stop()]);
  });

  it('copies, then a second engine on the same database (another process, another machine) skips every blob without a request', async () => {
    const url = await pgServer.createDatabase('sync');
    const dst = await startProxy(destination.url);
    const config = parseConfig({
      registries: { src: { url: source.url }, dst: { url: dst.url } },
      state: { url },
      transfer: { retries: 1, stateDir: '/nonexistent/never-used' },
      rules: [{ name: 'r', source: 'src', destination: 'dst' }],
    });
    try {
      const first = new Engine(config);
      try {
        expect(first.state.info.kind).toBe('postgres');
        expect((await first.sync()).rules[0]!.artifacts.copied).toBe(2);
      } finally {
        await first.close();
      }
      expect((await getManifest(destination, 'pg/app', '1'))?.digest).toBeDefined();
      dst.resetStats();
      const second = new Engine(config);
      try {
        const report = await second.sync();
        expect(report.rules[0]!.artifacts.present).toBe(2);
      } finally {
        await second.close();
      }
      expect(dst.count(/\/blobs\//)).toBe(0);
    } finally {
      await dst.stop();
    }
  });

  it('a database that goes away mid-run fails clearly, corrupts nothing, and the rerun finishes', async () => {
    const url = await pgServer.createDatabase('gone');
    const config = parseConfig({
      registries: { src: { url: source.url }, dst: { url: destination.url } },
      state: { url },
      transfer: { retries: 0 },
      rules: [{ name: 'r', source: 'src', destination: 'dst', destinationNamespace: 'gone' }],
    });
    const engine = new Engine(config);
    await engine.state.knownBlob('x', 'y', 'sha256:z'); // connected, schema made
    await pgServer.stop({ crash: true, keep: true });
    try {
      const report = await engine.sync().catch((e: unknown) => e);
      const text = JSON.stringify(report instanceof Error ? { message: report.message } : report);
      expect(text).toMatch(/state database postgres:\/\/ferry@127\.0\.0\.1:\d+\/gone/);
    } finally {
      await engine.close().catch(() => undefined);
      await pgServer.restart();
    }
    const rerun = new Engine(config);
    try {
      const report = await rerun.sync();
      expect(report.rules[0]!.artifacts.failed).toBe(0);
      expect(report.rules[0]!.artifacts.copied + report.rules[0]!.artifacts.present).toBe(2);
    } finally {
      await rerun.close();
    }
    expect((await getManifest(destination, 'gone/pg/app', '2'))?.digest).toBeDefined();
  });
});

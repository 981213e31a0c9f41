// The PostgreSQL state (state.url) against a real PostgreSQL server started for the test
// (test/helpers/postgres.ts): the StateStore contract (contract.ts, as for SQLite), schema creation by
// several processes at once, a database that goes away mid-run, and `ferry sync` on it end to end.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { Engine } from '../../src/engine/engine.js';
import { openState } from '../../src/state/index.js';
import { PostgresState, StateDatabaseError, redactUrl } from '../../src/state/postgres.js';
import { type TestPostgres, postgresAvailable, startPostgres } from '../helpers/postgres.js';
import { describeStateContract } from './contract.js';
import { type TestRegistry, buildImage, getManifest, pushImage, startProxy, startRegistry } from '../helpers/index.js';

let server: TestPostgres | undefined;
let dbs = 0;
const freshDb = () => server!.createDatabase(`t${++dbs}`);

afterAll(async () => {
  await server?.stop();
});

describe.runIf(postgresAvailable())('PostgresState', () => {
  beforeAll(async () => {
    server ??= await startPostgres();
  }, 60_000);

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

if (postgresAvailable()) {
  describeStateContract('PostgreSQL', async () => {
    server ??= await startPostgres();
    const url = await freshDb();
    return () => new PostgresState(url);
  });
}

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

// Many machines, one migration (issue 12): `ferry sync` processes started with the same config and one
// PostgreSQL state.url share the run with no other flag. Real processes, real registries, a real
// PostgreSQL: three workers split the repositories, upload each blob once, and each reports the whole
// run; a worker SIGKILLed mid-run loses its leases after state.leaseTimeout and the others finish;
// a bandwidth cap holds for the workers together, not per worker.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { SyncReport } from '../../src/engine/report.js';
import { type TestProxy, type TestRegistry, buildImage, getManifest, pushImage, randomBlob, startProxy, startRegistry } from '../helpers/index.js';
import { type TestPostgres, postgresAvailable, startPostgres } from '../helpers/postgres.js';
import { REPO_ROOT, type FerryRun, ferryCommand, runFerry } from '../cli/run.js';

const REPOS = Array.from({ length: 12 }, (_, i) => `team-${i % 3}/app-${i}`);
const TAGS = ['1.0', '1.1'];

let source: TestRegistry;
let destination: TestRegistry;
let front: TestProxy;
let db: TestPostgres;
const dir = mkdtempSync(join(tmpdir(), 'ferry-workers-'));
const base = randomBlob(300_000);
const digests = new Map<string, string>();
/** Every distinct blob of the data set and its size. */
const blobs = new Map<string, number>();
let uniqueBytes = 0;

beforeAll(async () => {
  [source, destination, db] = await Promise.all([startRegistry({ auth: 'none' }), startRegistry({ auth: 'none' }), startPostgres()]);
  front = await startProxy(destination.url);
  for (const repo of REPOS) {
    for (const tag of TAGS) {
      const image = buildImage({ layers: tag === TAGS[0] ? [base, randomBlob(120_000)] : [randomBlob(150_000)] });
      const { digest } = await pushImage(source, repo, tag, image);
      digests.set(`${repo}:${tag}`, digest);
      for (const b of [image.config, ...image.layers]) blobs.set(b.digest, b.bytes.length);
    }
  }
  uniqueBytes = [...blobs.values()].reduce((a, b) => a + b, 0);
}, 120_000);

afterAll(async () => {
  await Promise.all([source?.stop(), destination?.stop(), front?.stop(), db?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

function writeConfig(name: string, transfer: Record<string, unknown> = {}, state: Record<string, unknown> = {}): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    stringify({
      registries: { src: { url: source.url }, dst: { url: front.url } },
      transfer: { concurrency: 4, retries: 2, ...transfer },
      state: { url: '${FERRY_STATE_URL}', leaseTimeout: 3, ...state },
      rules: [{ name: 'migrate', source: 'src', destination: 'dst', destinationNamespace: name }],
    }),
  );
  return file;
}

/** Uploads of each digest that reached the destination (the closing PUT of an upload session). */
function uploadsByDigest(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of front.requests) {
    if (r.method !== 'PUT' || !/\/blobs\/uploads\//.test(r.path) || (r.status ?? 0) >= 300) continue;
    const digest = decodeURIComponent(/[?&]digest=([^&]+)/.exec(r.path)?.[1] ?? '');
    counts.set(digest, (counts.get(digest) ?? 0) + 1);
  }
  return counts;
}

async function expectComplete(namespace: string): Promise<void> {
  for (const [ref, digest] of digests) {
    const [repo, tag] = ref.split(':') as [string, string];
    expect((await getManifest(destination, `${namespace}/${repo}`, tag))?.digest, ref).toBe(digest);
  }
}

function start(args: string[], env: NodeJS.ProcessEnv): { child: ChildProcess; done: Promise<FerryRun> } {
  const [cmd, argv] = ferryCommand(args);
  const child = spawn(cmd, argv, { cwd: REPO_ROOT, env: { ...process.env, FERRY_LOG_LEVEL: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<FerryRun>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done };
}

async function owners(url: string): Promise<Map<string, number>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const rows = (await client.query<{ owner: string; n: string }>(`SELECT owner, count(*) AS n FROM ferry_units WHERE status = 'done' GROUP BY owner`)).rows;
    return new Map(rows.map((r) => [r.owner, Number(r.n)]));
  } finally {
    await client.end();
  }
}

describe.runIf(postgresAvailable())('workers on one PostgreSQL state', () => {
  it('three workers split the run, upload each blob once, and each reports the whole run', async () => {
    const url = await db.createDatabase('three');
    const config = writeConfig('three');
    front.resetStats();
    const runs = await Promise.all([0, 1, 2].map(() => runFerry(['sync', '--config', config, '--output', 'json'], { env: { FERRY_STATE_URL: url }, timeoutMs: 120_000 })));
    for (const run of runs) {
      expect(run.code, run.stderr.slice(-3000)).toBe(0);
      const report = JSON.parse(run.stdout) as SyncReport;
      const rule = report.rules[0]!;
      // The whole run, whoever copied what.
      expect(rule.artifacts).toMatchObject({ planned: REPOS.length * TAGS.length, failed: 0 });
      expect(rule.artifacts.copied + rule.artifacts.present).toBe(REPOS.length * TAGS.length);
      expect(rule.run?.workers).toBeGreaterThanOrEqual(1);
    }
    // The work was shared (more than one worker finished units) and every blob crossed once.
    expect((await owners(url)).size).toBeGreaterThan(1);
    const uploads = uploadsByDigest();
    for (const [digest, n] of uploads) expect(n, digest).toBe(1);
    expect(front.bytesUp).toBeLessThanOrEqual(uniqueBytes * 1.05 + 100_000);
    await expectComplete('three');
  }, 180_000);

  it('a worker SIGKILLed mid-run loses its leases after leaseTimeout; the others finish the run', async () => {
    const url = await db.createDatabase('killed');
    // Slow enough to be killed mid-run on a loaded machine: 200 KiB/s for ~4.6 MB, shared by the workers.
    const config = writeConfig('killed', { bandwidth: '200KiB/s' });
    const env = { FERRY_STATE_URL: url };
    const victim = start(['sync', '--config', config, '--output', 'json'], env);
    // It takes a lease first; the others join while it copies; then it is killed holding it.
    const client = new pg.Client({ connectionString: url });
    client.on('error', () => undefined);
    await client.connect();
    const holds = async () =>
      ((await client.query(`SELECT 1 FROM ferry_units u JOIN ferry_workers w ON w.id = u.owner WHERE w.pid = $1 AND u.status = 'leased'`, [victim.child.pid]).catch(() => ({ rowCount: 0 }))).rowCount ?? 0) > 0;
    for (let i = 0; i < 600 && !(await holds()); i++) await new Promise((r) => setTimeout(r, 100));
    const others = [0, 1].map(() => runFerry(['sync', '--config', config, '--output', 'json'], { env, timeoutMs: 150_000 }));
    // Kill it once the others are in the same run (so they take its lease over, not a new run) while
    // it holds a lease (with the bandwidth shared, its repository takes it a while).
    const joined = async () => Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM ferry_workers WHERE left_at IS NULL`)).rows[0]!.n);
    let ready = false;
    for (let i = 0; i < 900 && !ready; i++) {
      ready = (await joined()) >= 3 && (await holds());
      if (!ready) await new Promise((r) => setTimeout(r, 100));
    }
    expect(ready, 'the victim holds a lease when the others have joined').toBe(true);
    victim.child.kill('SIGKILL');
    const killed = await victim.done;
    expect(killed.signal, `exit ${killed.code}: ${killed.stderr.slice(-2000)}`).toBe('SIGKILL');
    const runs = await Promise.all(others);
    for (const run of runs) {
      expect(run.code, run.stderr.slice(-3000)).toBe(0);
      const rule = (JSON.parse(run.stdout) as SyncReport).rules[0]!;
      expect(rule.artifacts.failed).toBe(0);
      expect(rule.artifacts.copied + rule.artifacts.present).toBe(REPOS.length * TAGS.length);
    }
    const taken = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ferry_units WHERE attempts > 1`);
    await client.end();
    expect(Number(taken.rows[0]!.n)).toBeGreaterThan(0);
    await expectComplete('killed');
  }, 200_000);
});

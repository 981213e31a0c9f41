// The workers scenario of `npm run bench` (issue 12 item 7): three `ferry sync` processes with one
// config and one PostgreSQL state.url against one, on the same emulated link, in the same run.
//
//   state:        a throwaway PostgreSQL (test/helpers/postgres.ts: Debian's server binaries, initdb
//                 into a temporary directory, a free loopback port), one fresh database per run
//   destination:  a fresh token-auth registry behind the WAN emulator for each run
//   data set:     the bench's (base layers shared by repositories)
//
// Reported: bytes through the link for each run against the data set's unique bytes (each blob
// should cross once per destination however many workers share the run: ≤ 1.05x), and the wall
// clock of the three workers (first start to last exit) against the one worker's (≤ 1.25x: the link
// is shared, so no speed-up is expected on one machine; the cost of cooperating is what is measured).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { stringify } from 'yaml';
import { type TestPostgres, postgresAvailable, startPostgres } from '../test/helpers/postgres.js';
import { type Dataset, compareDestination } from './dataset.js';
import type { BenchSettings } from './env.js';
import { type FerryReport, ferryArgs } from './ferry.js';
import { type Destination, USER } from './link.js';
import { type RunResult, runChild } from './proc.js';
import type { ScaleRow, ScaleSink } from './scale.js';

export interface WorkersContext {
  s: BenchSettings;
  work: string;
  sourceUrl: string;
  ds: Dataset;
  logFile(name: string): string | undefined;
  destination(name: string): Promise<Destination & { done(failed?: boolean): Promise<void> }>;
}

interface WorkersRun {
  workers: number;
  /** First start to last exit. */
  ms: number;
  /** Client → destination bytes through the WAN emulator. */
  bytesUp: number;
  blobs: FerryReport['totals']['blobs'] | undefined;
  /** Units (repositories) finished by each worker. */
  unitsByWorker: number[];
  peakRss: number[];
}

const sec = (ms: number): number => Math.round(ms) / 1000;
const mb = (bytes: number): number => Math.round(bytes / 100_000) / 10;

async function unitsByWorker(url: string): Promise<number[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const rows = (await client.query<{ n: string }>(`SELECT count(*) AS n FROM ferry_units WHERE status = 'done' GROUP BY owner ORDER BY count(*) DESC`)).rows;
    return rows.map((r) => Number(r.n));
  } finally {
    await client.end();
  }
}

async function runWorkers(ctx: WorkersContext, db: TestPostgres, workers: number): Promise<WorkersRun> {
  const name = `workers-${workers}`;
  const url = await db.createDatabase(name.replace('-', '_'));
  const dest = await ctx.destination(name);
  let failed = true;
  try {
    const dir = join(ctx.work, name);
    mkdirSync(dir, { recursive: true });
    const config = join(dir, 'ferry.yaml');
    writeFileSync(
      config,
      stringify({
        registries: {
          source: { url: ctx.sourceUrl },
          destination: { url: dest.url, username: USER.username, password: USER.password },
        },
        // One config for every worker, as a Job with parallelism N would run it.
        transfer: { stateDir: join(dir, 'state'), concurrency: ctx.s.concurrency },
        state: { url: '${FERRY_STATE_URL}' },
        rules: [{ name: 'bench', source: 'source', destination: 'destination' }],
      }),
    );
    const env = { ...process.env, FERRY_STATE_URL: url, FERRY_LOG_LEVEL: process.env.FERRY_LOG_LEVEL ?? 'info' };
    const started = performance.now();
    const runs: RunResult[] = await Promise.all(
      Array.from({ length: workers }, (_, i) => runChild(process.execPath, ferryArgs(['sync', '--config', config, '--output', 'json']), { env, logFile: ctx.logFile(`${name}-${i}`) })),
    );
    const ms = performance.now() - started;
    let blobs: WorkersRun['blobs'];
    for (const [i, run] of runs.entries()) {
      let report: FerryReport | undefined;
      try {
        report = JSON.parse(run.stdout) as FerryReport;
      } catch {
        report = undefined;
      }
      if (run.code !== 0 || report?.status !== 'ok') throw new Error(`worker ${i + 1}/${workers} exited ${run.code ?? run.signal} (status ${report?.status ?? 'no report'})\n${run.stderrTail.slice(-1500)}`);
      // Every worker reports the whole run; the first one's counts stand for it.
      blobs ??= report.totals.blobs;
    }
    const problems = await compareDestination(dest.client(), ctx.ds, (r) => r);
    if (problems.length) throw new Error(`${name}: the destination differs from the source: ${problems.slice(0, 3).join('; ')}`);
    failed = false;
    return { workers, ms, bytesUp: dest.wan.bytesUp, blobs, unitsByWorker: await unitsByWorker(url), peakRss: runs.map((r) => r.peakRss) };
  } finally {
    await dest.done(failed);
  }
}

export async function runWorkersScenario(ctx: WorkersContext, sink: ScaleSink): Promise<void> {
  if (!postgresAvailable()) throw new Error('no PostgreSQL server binaries (apt-get install -y postgresql, or run scripts/ensure-postgres.mjs)');
  const db = await startPostgres();
  try {
    const unique = ctx.ds.uniqueBytes;
    const one = await runWorkers(ctx, db, 1);
    sink.log(`workers: 1 worker ${sec(one.ms)} s, ${mb(one.bytesUp)} MB through the link (${(one.bytesUp / unique).toFixed(3)}x unique), blobs ${JSON.stringify(one.blobs)}`);
    const three = await runWorkers(ctx, db, 3);
    sink.log(
      `workers: 3 workers ${sec(three.ms)} s, ${mb(three.bytesUp)} MB through the link (${(three.bytesUp / unique).toFixed(3)}x unique), blobs ${JSON.stringify(three.blobs)}, units per worker ${three.unitsByWorker.join('/')}`,
    );
    sink.details.workers = { uniqueBytes: unique, one, three };
    const bytesRow = (r: WorkersRun): ScaleRow => {
      const ratio = r.bytesUp / unique;
      return {
        id: `workers-bytes-${r.workers}`,
        measurement: `${r.workers} worker${r.workers > 1 ? 's' : ''} on one PostgreSQL state: bytes through the link`,
        value: mb(r.bytesUp),
        unit: 'MB',
        baseline: { name: 'unique bytes', value: mb(unique), unit: 'MB' },
        ratio,
        target: '<= 1.05x',
        pass: ratio <= 1.05,
        note: `blobs uploaded ${r.blobs?.uploaded ?? '?'}, mounted ${r.blobs?.mounted ?? '?'}${r.workers > 1 ? `; repositories per worker ${r.unitsByWorker.join('/')}` : ''}`,
      };
    };
    sink.rows.push(bytesRow(one), bytesRow(three));
    const ratio = three.ms / one.ms;
    sink.rows.push({
      id: 'workers-time',
      measurement: '3 workers on one PostgreSQL state, same link (first start to last exit)',
      value: sec(three.ms),
      unit: 's',
      baseline: { name: '1 worker', value: sec(one.ms), unit: 's' },
      ratio,
      target: '<= 1.25x',
      pass: ratio <= 1.25,
    });
  } finally {
    await db.stop();
  }
}

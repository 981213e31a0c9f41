// Shared limits (issue 12, item 3 and 6): three `ferry sync` workers on one PostgreSQL state divide
// `transfer.bandwidth` and a registry's `limits.requestsPerSecond` among the live workers, so the
// destination sees the configured figure, not three times it. Measured at a counting front before
// the destination: bytes uploaded and requests received, sampled over time, judged over a window of
// several seconds once the three workers are registered (ferry_workers heartbeats) and had a
// heartbeat to learn it, while the three hold leases; then the tail, where the last worker copying
// gets the whole figure (the idle ones take no share: before, it kept its third, ~1 MiB/s here).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { SyncReport } from '../../src/engine/report.js';
import { type TestProxy, type TestRegistry, buildImage, pushImage, randomBlob, startProxy, startRegistry } from '../helpers/index.js';
import { type TestPostgres, postgresAvailable, startPostgres } from '../helpers/postgres.js';
import { type FerryRun, runFerry } from '../cli/run.js';

const LEASE_TIMEOUT_S = 3;
/** The workers' heartbeat period (a third of the lease timeout): the share is learnt within one. */
const HEARTBEAT_MS = (LEASE_TIMEOUT_S * 1000) / 3;

let source: TestRegistry;
let destination: TestRegistry;
let front: TestProxy;
let db: TestPostgres;
const dir = mkdtempSync(join(tmpdir(), 'ferry-workers-limits-'));

/** Repositories of the big data set (unique 1-2 MB layers) and of the small one (many requests). */
const BIG = Array.from({ length: 12 }, (_, i) => `big/app-${String(i).padStart(2, '0')}`);
const SMALL = Array.from({ length: 12 }, (_, i) => `small/app-${i}`);
const TAGS = ['1.0', '1.1'];
let bigBytes = 0;

beforeAll(async () => {
  [source, destination, db] = await Promise.all([startRegistry({ auth: 'none' }), startRegistry({ auth: 'none' }), startPostgres()]);
  front = await startProxy(destination.url);
  for (const [i, repo] of BIG.entries()) {
    for (const [j, tag] of TAGS.entries()) {
      // The last repository of the listing is the biggest: it is still copying once the others
      // ran out of units, so the tail of the run (the idle workers taking no share) is measured.
      const size = i === BIG.length - 1 ? 5_000_000 : 1_000_000 + ((i * TAGS.length + j) % 5) * 250_000;
      const image = buildImage({ layers: [randomBlob(size)] });
      await pushImage(source, repo, tag, image);
      bigBytes += image.layers[0]!.bytes.length + image.config.bytes.length;
    }
  }
  for (const repo of SMALL) for (const tag of TAGS) await pushImage(source, repo, tag, buildImage({ layers: [randomBlob(2_000), randomBlob(3_000)] }));
}, 180_000);

afterAll(async () => {
  await Promise.all([source?.stop(), destination?.stop(), front?.stop(), db?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

function writeConfig(name: string, include: string, transfer: Record<string, unknown>, limits?: Record<string, unknown>): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    stringify({
      registries: { src: { url: source.url }, dst: { url: front.url, ...(limits ? { limits } : {}) } },
      // Few artifacts at a time per worker: the units last, so the three stay busy for a while.
      transfer: { concurrency: 4, artifactConcurrency: 2, retries: 2, ...transfer },
      state: { url: '${FERRY_STATE_URL}', leaseTimeout: LEASE_TIMEOUT_S },
      rules: [{ name: 'migrate', source: 'src', destination: 'dst', destinationNamespace: name, filters: { repositories: [include] } }],
    }),
  );
  return file;
}

interface Sample {
  t: number;
  bytesUp: number;
  requests: number;
  /** Workers with a fresh heartbeat that have not left. */
  live: number;
  /** Live workers holding a lease (the others have nothing to copy). */
  busy: number;
  /** Units nobody leased yet. */
  pending: number;
  listed: boolean;
}

/** Samples the front and the run's tables every 100 ms until `until` settles. */
async function sample(url: string, until: Promise<unknown>): Promise<Sample[]> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  await client.connect();
  const samples: Sample[] = [];
  let finished = false;
  until.finally(() => (finished = true)).catch(() => undefined);
  const ttl = LEASE_TIMEOUT_S * 1000;
  try {
    while (!finished) {
      const t = performance.now();
      const bytesUp = front.bytesUp;
      const requests = front.requests.length;
      const row = await client
        .query<{ live: string; busy: string; pending: string; listed: boolean | null }>(
          `SELECT (SELECT count(*) FROM ferry_workers WHERE left_at IS NULL AND heartbeat_at > (extract(epoch from clock_timestamp()) * 1000)::bigint - $1) AS live,
                  (SELECT count(DISTINCT owner) FROM ferry_units WHERE status = 'leased') AS busy,
                  (SELECT count(*) FROM ferry_units WHERE status = 'pending') AS pending,
                  (SELECT bool_and(listed) FROM ferry_run_rules) AS listed`,
          [ttl],
        )
        .then((r) => r.rows[0])
        .catch(() => undefined);
      if (row) samples.push({ t, bytesUp, requests, live: Number(row.live), busy: Number(row.busy), pending: Number(row.pending), listed: !!row.listed });
      await sleep(100);
    }
  } finally {
    await client.end();
  }
  return samples;
}

/**
 * The window to judge: from one heartbeat (plus slack) after the three workers first all hold a
 * lease (so each learnt the others) to the last moment the three still do.
 */
function busyWindow(samples: Sample[]): { from: Sample; to: Sample } | undefined {
  const all = samples.find((s) => s.busy >= 3);
  if (!all) return undefined;
  const from = samples.find((s) => s.t >= all.t + HEARTBEAT_MS + 500);
  const to = [...samples].reverse().find((s) => s.busy >= 3);
  return from && to && to.t > from.t ? { from, to } : undefined;
}

/**
 * The tail: from one heartbeat (plus slack) after a worker ran out of units to the last sample
 * some worker still holds one. Those left copying share the whole figure.
 */
function tailWindow(samples: Sample[], after: Sample): { from: Sample; to: Sample } | undefined {
  const fewer = samples.find((s) => s.t > after.t && s.busy < 3 && s.busy > 0);
  if (!fewer) return undefined;
  const from = samples.find((s) => s.t >= fewer.t + HEARTBEAT_MS + 500 && s.busy > 0);
  const to = [...samples].reverse().find((s) => s.busy > 0);
  return from && to && to.t > from.t ? { from, to } : undefined;
}

function timeline(samples: Sample[]): string {
  const t0 = samples[0]?.t ?? 0;
  return samples
    .filter((_, i) => i % 5 === 0)
    .map((s) => `${((s.t - t0) / 1000).toFixed(1)}s up=${s.bytesUp} req=${s.requests} live=${s.live} busy=${s.busy} pending=${s.pending}${s.listed ? '' : ' (listing)'}`)
    .join('\n');
}

async function threeWorkers(config: string, url: string): Promise<{ runs: FerryRun[]; samples: Sample[] }> {
  front.resetStats();
  const running = Promise.all([0, 1, 2].map(() => runFerry(['sync', '--config', config, '--output', 'json'], { env: { FERRY_STATE_URL: url }, timeoutMs: 150_000 })));
  const samples = await sample(url, running);
  const runs = await running;
  for (const run of runs) {
    expect(run.code, run.stderr.slice(-3000)).toBe(0);
    const rule = (JSON.parse(run.stdout) as SyncReport).rules[0]!;
    expect(rule.artifacts.failed).toBe(0);
    expect(rule.artifacts.copied + rule.artifacts.present).toBe(12 * TAGS.length);
  }
  return { runs, samples };
}

describe.runIf(postgresAvailable())('limits shared by workers on one PostgreSQL state', () => {
  it('transfer.bandwidth holds for the three workers together, within 10%', async () => {
    const cap = 3 * 1024 * 1024;
    const url = await db.createDatabase('bandwidth');
    const { samples } = await threeWorkers(writeConfig('bandwidth', 'big/**', { bandwidth: '3MiB/s' }), url);
    const window = busyWindow(samples);
    expect(window, timeline(samples)).toBeDefined();
    const { from, to } = window!;
    const seconds = (to.t - from.t) / 1000;
    const rate = (to.bytesUp - from.bytesUp) / seconds;
    const detail = `${(rate / 1024 / 1024).toFixed(2)} MiB/s over ${seconds.toFixed(1)} s (cap 3 MiB/s)\n${timeline(samples)}`;
    if (process.env.FERRY_TEST_VERBOSE) console.log(detail);
    expect(seconds, detail).toBeGreaterThanOrEqual(3);
    expect(rate, detail).toBeLessThanOrEqual(cap * 1.1);
    // Generous (a loaded 2-core machine) but far above a third of the cap: the share is not too small.
    expect(rate, detail).toBeGreaterThanOrEqual(cap * 0.6);
    // The last workers copying share the whole cap (the idle ones take no share): well above the
    // third a worker would keep otherwise, measured when the tail lasts long enough to tell.
    const tail = tailWindow(samples, to);
    expect(tail, timeline(samples)).toBeDefined();
    if (tail && tail.to.t - tail.from.t >= 1500) {
      const tailRate = (tail.to.bytesUp - tail.from.bytesUp) / ((tail.to.t - tail.from.t) / 1000);
      const tailDetail = `tail ${(tailRate / 1024 / 1024).toFixed(2)} MiB/s over ${((tail.to.t - tail.from.t) / 1000).toFixed(1)} s\n${detail}`;
      if (process.env.FERRY_TEST_VERBOSE) console.log(tailDetail);
      expect(tailRate, tailDetail).toBeLessThanOrEqual(cap * 1.1);
      expect(tailRate, tailDetail).toBeGreaterThanOrEqual(cap * 0.5);
    }
    // Every layer crossed (the window measured the run, not something else).
    expect(front.bytesUp).toBeGreaterThanOrEqual(bigBytes);
  }, 200_000);

  it("a registry's limits.requestsPerSecond holds for the three workers together, within 10%", async () => {
    const cap = 12;
    const url = await db.createDatabase('requests');
    const { samples } = await threeWorkers(writeConfig('requests', 'small/**', {}, { requestsPerSecond: cap }), url);
    const window = busyWindow(samples);
    expect(window, timeline(samples)).toBeDefined();
    const { from, to } = window!;
    const seconds = (to.t - from.t) / 1000;
    const rate = (to.requests - from.requests) / seconds;
    const detail = `${rate.toFixed(1)} requests/s over ${seconds.toFixed(1)} s (cap ${cap}/s)\n${timeline(samples)}`;
    if (process.env.FERRY_TEST_VERBOSE) console.log(detail);
    expect(seconds, detail).toBeGreaterThanOrEqual(3);
    expect(rate, detail).toBeLessThanOrEqual(cap * 1.1);
    expect(rate, detail).toBeGreaterThanOrEqual(cap * 0.6);
  }, 200_000);
});

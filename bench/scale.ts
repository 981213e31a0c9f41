// The scale scenario of `npm run bench` (issue #11 item 5): catalogs of REPOS x TAGS small images,
// Ferry against the minimal client (bench/minimal-client.ts) in the same run on the same link.
//
//   source:       token-auth distribution over a generated storage (bench/scale-data.ts), local
//   destination:  token-auth distribution behind the WAN emulator (BENCH_DELAY_MS one way,
//                 BENCH_LINK_MBPS); its token service behind the same delay
//   counting:     an HTTP front before each registry counts requests by kind (bench/front.ts), so
//                 Ferry and the minimal client are counted by the same thing, neither of them
//
// Per size: `ferry plan` (peak RSS), the minimal client's full copy and no-op, Ferry's full sync and
// no-op rerun (same state directory), and regsync's full copy and no-op (`regsync once`, `type:
// registry`, BENCH_CONCURRENCY images and requests at a time, where it is built; BENCH_SKIP_REGSYNC=1
// skips it), each into / against its own fresh destination.
//
// FERRY_BENCH_SCALE: small (20 x 10, for development) | 2k (100 x 20) | 20k (1000 x 20) |
// full (default: 2k and 20k) | RxT[,RxT...] (explicit shapes).
// FERRY_BENCH_CLIENT_CONCURRENCY: tags in flight of the minimal client (default 32).
// FERRY_BENCH_SCALE_STEPS: which steps run per size, comma-separated, of plan, minimal, sync (default
// all three). Without `minimal` the sync rows have no ratio: memory and request counts do not depend
// on the machine's load, so `plan` or `plan,sync` can be measured while other work runs.
// FERRY_BENCH_SCALE_PLAN_ONLY=1 is FERRY_BENCH_SCALE_STEPS=plan.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { startRegistry, startTokenIssuer, startWanProxy, type TestRegistry } from '../test/helpers/index.js';
import type { BenchSettings } from './env.js';
import { ferryArgs } from './ferry.js';
import { type CountingFront, type RequestKind, startCountingFront } from './front.js';
import type { LinkOptions } from './link.js';
import { USER } from './link.js';
import type { MinimalJob, MinimalResult } from './minimal-client.js';
import { type RunResult, runChild } from './proc.js';
import { ensureRegsync, regsyncOnce } from './regsync.js';
import { RawRegistry, mapLimit } from './raw.js';
import { type ScaleCatalog, generateScaleCatalog } from './scale-data.js';

export interface ScaleRow {
  id: string;
  measurement: string;
  value: number | null;
  unit: string;
  baseline?: { name: string; value: number; unit: string } | undefined;
  /** value / baseline. */
  ratio?: number | undefined;
  target?: string | undefined;
  pass?: boolean | undefined;
  note?: string | undefined;
}

export interface ScaleSink {
  rows: ScaleRow[];
  details: Record<string, unknown>;
  notes: string[];
  log(s: string): void;
}

export function scaleShapes(): { repos: number; tags: number; label: string }[] {
  const v = (process.env.FERRY_BENCH_SCALE ?? 'full').trim();
  const named: Record<string, [number, number][]> = {
    small: [[20, 10]],
    '2k': [[100, 20]],
    '20k': [[1000, 20]],
    full: [
      [100, 20],
      [1000, 20],
    ],
  };
  const shapes =
    named[v] ??
    v.split(',').map((x) => {
      const m = /^(\d+)x(\d+)$/.exec(x.trim());
      if (!m) throw new Error(`FERRY_BENCH_SCALE=${v}: expected small, 2k, 20k, full or RxT[,RxT...]`);
      return [Number(m[1]), Number(m[2])] as [number, number];
    });
  return shapes.map(([repos, tags]) => ({ repos, tags, label: labelOf(repos * tags) }));
}

function labelOf(n: number): string {
  return n >= 1000 && n % 1000 === 0 ? `${n / 1000}k` : String(n);
}

const sec = (ms: number): number => Math.round(ms) / 1000;
const mb = (bytes: number): number => Math.round(bytes / 100_000) / 10;
const MB = 1_000_000;

interface Front {
  url: string;
  front: CountingFront;
  stop(): Promise<void>;
}

/** Token-auth source registry over the generated storage, with a counting front (no WAN). */
async function startScaleSource(storageDir: string): Promise<Front & { registry: TestRegistry }> {
  const registry = await startRegistry({ auth: 'token', users: [{ ...USER }], tokenTtlSeconds: 3600, storageDir });
  const front = await startCountingFront({ host: '127.0.0.1', port: registry.port });
  return {
    url: front.url,
    front,
    registry,
    async stop() {
      await front.stop();
      await registry.stop();
    },
  };
}

/** Fresh token-auth destination: client → WAN → counting front → registry; token service behind its own WAN. */
async function startScaleDestination(link: LinkOptions): Promise<Front> {
  const issuer = await startTokenIssuer({ users: [{ ...USER }], tokenTtlSeconds: 3600 });
  const issuerWan = await startWanProxy({ host: '127.0.0.1', port: Number(new URL(issuer.url).port) }, { oneWayDelayMs: link.delayMs, bandwidthBytesPerSec: 0 });
  const registry = await startRegistry({ auth: 'token', issuer, users: [{ ...USER }], tokenTtlSeconds: 3600, extraConfig: { auth: { token: { realm: `${issuerWan.url}/token` } } } });
  const front = await startCountingFront({ host: '127.0.0.1', port: registry.port });
  const wan = await startWanProxy({ host: '127.0.0.1', port: front.port }, { oneWayDelayMs: link.delayMs, bandwidthBytesPerSec: link.bytesPerSec });
  return {
    url: wan.url,
    front,
    async stop() {
      await wan.stop();
      await front.stop();
      await registry.stop();
      await issuerWan.stop();
      await issuer.stop();
    },
  };
}

function writeScaleConfig(dir: string, sourceUrl: string, destinationUrl: string, stateDir: string): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'ferry.yaml');
  writeFileSync(
    file,
    stringify({
      registries: {
        source: { url: sourceUrl, username: USER.username, password: USER.password },
        destination: { url: destinationUrl, username: USER.username, password: USER.password },
      },
      transfer: { stateDir },
      rules: [{ name: 'scale', source: 'source', destination: 'destination' }],
    }),
  );
  return file;
}

async function runFerry(command: 'sync' | 'plan', config: string, logFile: string | undefined): Promise<RunResult & { report: { status?: string; totals?: unknown } | undefined }> {
  const res = await runChild(process.execPath, ferryArgs([command, '--config', config, '--output', 'json']), {
    logFile,
    env: { ...process.env, FERRY_LOG_LEVEL: process.env.FERRY_LOG_LEVEL ?? 'warn' },
  });
  let report: { status?: string; totals?: unknown } | undefined;
  try {
    report = JSON.parse(res.stdout) as typeof report;
  } catch {
    report = undefined;
  }
  if (res.code !== 0 || !report || (report.status !== 'ok' && report.status !== 'planned')) {
    throw new Error(`ferry ${command} exited ${res.code ?? res.signal} (status ${report?.status ?? 'no report'}): ${res.stdout.slice(0, 600)} ${res.stderrTail.slice(-1500)}`);
  }
  return { ...res, report };
}

async function runMinimal(work: string, job: MinimalJob): Promise<MinimalResult & { peakRss: number }> {
  const file = join(work, `minimal-${job.mode}-${Date.now()}.json`);
  writeFileSync(file, JSON.stringify(job));
  const res = await runChild(process.execPath, ['--import', 'tsx', 'bench/minimal-client.ts', file]);
  if (res.code !== 0) throw new Error(`minimal client (${job.mode}) failed (${res.code}): ${res.stderrTail}`);
  return { ...(JSON.parse(res.stdout.trim().split('\n').pop() ?? '{}') as MinimalResult), peakRss: res.peakRss };
}

/** Every repository's tag list at the destination, and the digests of a sample of tags. */
async function checkDestination(url: string, c: ScaleCatalog): Promise<string[]> {
  const client = new RawRegistry({ url, ...USER });
  const problems: string[] = [];
  try {
    await mapLimit(c.repositories, 16, async (repo, r) => {
      const tags = new Set(await client.tags(repo));
      for (const t of c.tagNames) if (!tags.has(t)) problems.push(`${repo}:${t} missing`);
      const t = r % c.tags;
      const digest = await client.headManifest(repo, c.tagNames[t]!);
      if (digest !== c.digests[r]![t]) problems.push(`${repo}:${c.tagNames[t]} is ${digest}, expected ${c.digests[r]![t]}`);
    });
  } finally {
    await client.close();
  }
  return problems;
}

type Counts = Partial<Record<RequestKind, number>>;

function perTag(counts: Counts, tags: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(counts)) out[k] = Math.round((v / tags) * 1000) / 1000;
  return out;
}

function total(counts: Counts): number {
  return Object.values(counts).reduce((a, b) => a + (b ?? 0), 0);
}

function describeCounts(src: Counts, dst: Counts, tags: number): string {
  const fmt = (c: Counts) =>
    Object.entries(c)
      .filter(([k]) => k !== 'ping')
      .map(([k, v]) => `${k} ${(v! / tags).toFixed(2)}`)
      .join(', ');
  return `source: ${fmt(src) || '-'}; destination: ${fmt(dst) || '-'}`;
}

export async function runScaleScenario(s: BenchSettings, link: LinkOptions, work: string, sink: ScaleSink): Promise<void> {
  const concurrency = Math.max(1, Number(process.env.FERRY_BENCH_CLIENT_CONCURRENCY || 32));
  const sizes: Record<string, unknown> = {};
  sink.details.scale = { clientConcurrency: concurrency, sizes };
  const planRss: Record<string, number> = {};
  const steps = new Set((process.env.FERRY_BENCH_SCALE_STEPS ?? (process.env.FERRY_BENCH_SCALE_PLAN_ONLY === '1' ? 'plan' : 'plan,minimal,sync')).split(',').map((x) => x.trim()));
  for (const shape of scaleShapes()) {
    const { repos, tags, label } = shape;
    const n = repos * tags;
    const dir = resolve(s.dataDir, `scale-${s.seed.replace(/[^A-Za-z0-9._-]/g, '_')}-${repos}x${tags}`);
    const catalog = generateScaleCatalog(join(dir, 'storage'), dir, s.seed, repos, tags, sink.log);
    const source = await startScaleSource(join(dir, 'storage'));
    const d: Record<string, unknown> = { repos, tags, catalogTags: n, blobs: catalog.blobs, bytes: catalog.bytes };
    sizes[label] = d;
    try {
      const endpoint = (url: string) => ({ url, ...USER });
      // 1. minimal client: full copy, then no-op, into its own destination.
      let minFull: MinimalResult | undefined;
      let minNoop: MinimalResult | undefined;
      const minDest = steps.has('minimal') ? await startScaleDestination(link) : undefined;
      if (minDest) try {
        source.front.take();
        minFull = await runMinimal(work, { mode: 'full', source: endpoint(source.url), destination: endpoint(minDest.url), concurrency, repositories: catalog.repositories });
        const minFullCounts = { source: source.front.take(), destination: minDest.front.take() };
        sink.log(`scale ${label}: minimal client full copy ${sec(minFull.ms)} s (${(n / (minFull.ms / 1000)).toFixed(1)} tags/s); ${describeCounts(minFullCounts.source, minFullCounts.destination, n)}`);
        minNoop = await runMinimal(work, { mode: 'noop', source: endpoint(source.url), destination: endpoint(minDest.url), concurrency, repositories: catalog.repositories });
        const minNoopCounts = { source: source.front.take(), destination: minDest.front.take() };
        sink.log(`scale ${label}: minimal client no-op ${sec(minNoop.ms)} s (${(n / (minNoop.ms / 1000)).toFixed(1)} tags/s)`);
        d.minimal = { full: { ...minFull, requests: minFullCounts, perTag: { source: perTag(minFullCounts.source, n), destination: perTag(minFullCounts.destination, n) } }, noop: { ...minNoop, requests: minNoopCounts, perTag: { source: perTag(minNoopCounts.source, n), destination: perTag(minNoopCounts.destination, n) } } };
      } finally {
        await minDest.stop();
      }

      // 2. Ferry: plan (RSS), full sync, no-op rerun, into a fresh destination.
      const dest = await startScaleDestination(link);
      try {
        const stateDir = join(work, `scale-state-${label}`);
        const config = writeScaleConfig(join(work, `scale-${label}`), source.url, dest.url, stateDir);
        const logFile = s.logDir ? join(resolve(s.logDir), `scale-${label}`) : undefined;
        source.front.take();
        const plan = steps.has('plan') ? await runFerry('plan', config, logFile && `${logFile}-plan.log`) : undefined;
        const planCounts = { source: source.front.take(), destination: dest.front.take() };
        if (plan) {
          planRss[label] = plan.peakRss;
          sink.log(`scale ${label}: ferry plan ${sec(plan.ms)} s, peak RSS ${mb(plan.peakRss)} MB`);
          const smallest = Object.values(planRss)[0]!;
          sink.rows.push({
            id: `scale-${label}-plan-rss`,
            measurement: `scale ${label} tags: \`ferry plan\` peak RSS`,
            value: mb(plan.peakRss),
            unit: 'MB',
            baseline: Object.keys(planRss)[0] !== label ? { name: `plan of ${Object.keys(planRss)[0]} tags`, value: mb(smallest), unit: 'MB' } : undefined,
            target: '< 150 MB, within 30 MB of 2k',
            pass: plan.peakRss < 150 * MB && plan.peakRss - smallest <= 30 * MB,
            note: `plan took ${sec(plan.ms)} s`,
          });
        }
        const planned = plan ? { plan: { ms: plan.ms, peakRss: plan.peakRss, requests: planCounts } } : {};
        if (!steps.has('sync')) {
          d.ferry = planned;
          continue;
        }
        const full = await runFerry('sync', config, logFile && `${logFile}-full.log`);
        const fullCounts = { source: source.front.take(), destination: dest.front.take() };
        sink.log(`scale ${label}: ferry full sync ${sec(full.ms)} s (${(n / (full.ms / 1000)).toFixed(1)} tags/s), peak RSS ${mb(full.peakRss)} MB; ${describeCounts(fullCounts.source, fullCounts.destination, n)}`);
        const noop = await runFerry('sync', config, logFile && `${logFile}-noop.log`);
        const noopCounts = { source: source.front.take(), destination: dest.front.take() };
        sink.log(`scale ${label}: ferry no-op rerun ${sec(noop.ms)} s (${(n / (noop.ms / 1000)).toFixed(1)} tags/s), peak RSS ${mb(noop.peakRss)} MB; ${describeCounts(noopCounts.source, noopCounts.destination, n)}`);
        const problems = await checkDestination(dest.url, catalog);
        sink.log(`scale ${label}: destination checked (${problems.length} problems)`);
        if (problems.length) sink.notes.push(`scale ${label}: Ferry's destination differs: ${problems.length} problems, e.g. ${problems.slice(0, 3).join('; ')}`);
        d.ferry = {
          ...planned,
          full: { ms: full.ms, peakRss: full.peakRss, totals: full.report?.totals, requests: fullCounts, perTag: { source: perTag(fullCounts.source, n), destination: perTag(fullCounts.destination, n) } },
          noop: { ms: noop.ms, peakRss: noop.peakRss, totals: noop.report?.totals, requests: noopCounts, perTag: { source: perTag(noopCounts.source, n), destination: perTag(noopCounts.destination, n) } },
          identical: problems.length === 0,
        };
        const mfull = d.minimal as { full: { requests: { source: Counts; destination: Counts } }; noop: { requests: { source: Counts; destination: Counts } } } | undefined;
        const reqNote = (c: { source: Counts; destination: Counts }, base: { source: Counts; destination: Counts } | undefined) =>
          `${((total(c.source) + total(c.destination)) / n).toFixed(2)} requests/tag${base ? ` (minimal ${((total(base.source) + total(base.destination)) / n).toFixed(2)})` : ''}; ${describeCounts(c.source, c.destination, n)}`;
        sink.rows.push({
          id: `scale-${label}-full`,
          measurement: `scale ${label} tags (${repos} x ${tags}): Ferry full sync (${(n / (full.ms / 1000)).toFixed(1)} tags/s)`,
          value: sec(full.ms),
          unit: 's',
          baseline: minFull && { name: `minimal client, ${(n / (minFull.ms / 1000)).toFixed(1)} tags/s`, value: sec(minFull.ms), unit: 's' },
          ratio: minFull && full.ms / minFull.ms,
          target: '<= 1.5x (aim 1.2x)',
          pass: minFull ? full.ms / minFull.ms <= 1.5 && problems.length === 0 : undefined,
          note: `${problems.length ? 'DESTINATION DIFFERS; ' : ''}${reqNote(fullCounts, mfull?.full.requests)}`,
        });
        sink.rows.push({
          id: `scale-${label}-noop`,
          measurement: `scale ${label} tags: Ferry no-op rerun (${(n / (noop.ms / 1000)).toFixed(1)} tags/s)`,
          value: sec(noop.ms),
          unit: 's',
          baseline: minNoop && { name: `minimal no-op, ${(n / (minNoop.ms / 1000)).toFixed(1)} tags/s`, value: sec(minNoop.ms), unit: 's' },
          ratio: minNoop && noop.ms / minNoop.ms,
          target: '<= 1.5x (aim 1.1x)',
          pass: minNoop ? noop.ms / minNoop.ms <= 1.5 : undefined,
          note: reqNote(noopCounts, mfull?.noop.requests),
        });
        sink.rows.push({
          id: `scale-${label}-rss`,
          measurement: `scale ${label} tags: Ferry peak RSS, full sync`,
          value: mb(full.peakRss),
          unit: 'MB',
          target: '< 200 MB',
          pass: full.peakRss < 200 * MB,
        });
      } finally {
        await dest.stop();
      }

      // 3. regsync: full copy and no-op into its own destination, counted by the same fronts.
      const regsync = process.env.BENCH_SKIP_REGSYNC === '1' ? undefined : ensureRegsync();
      if (regsync) {
        const rDest = await startScaleDestination(link);
        try {
          const host = (url: string) => new URL(url).host;
          source.front.take();
          const rFull = await regsyncOnce(regsync, work, host(source.url), host(rDest.url), s.concurrency);
          const rFullCounts = { source: source.front.take(), destination: rDest.front.take() };
          sink.log(`scale ${label}: regsync full copy ${sec(rFull.ms)} s (${(n / (rFull.ms / 1000)).toFixed(1)} tags/s), peak RSS ${mb(rFull.peakRss)} MB; ${describeCounts(rFullCounts.source, rFullCounts.destination, n)}`);
          const rNoop = await regsyncOnce(regsync, work, host(source.url), host(rDest.url), s.concurrency);
          const rNoopCounts = { source: source.front.take(), destination: rDest.front.take() };
          sink.log(`scale ${label}: regsync no-op ${sec(rNoop.ms)} s (${(n / (rNoop.ms / 1000)).toFixed(1)} tags/s); ${describeCounts(rNoopCounts.source, rNoopCounts.destination, n)}`);
          const problems = await checkDestination(rDest.url, catalog);
          if (problems.length) sink.notes.push(`scale ${label}: regsync's destination differs: ${problems.length} problems, e.g. ${problems.slice(0, 3).join('; ')}`);
          d.regsync = {
            full: { ms: rFull.ms, peakRss: rFull.peakRss, requests: rFullCounts, perTag: { source: perTag(rFullCounts.source, n), destination: perTag(rFullCounts.destination, n) } },
            noop: { ms: rNoop.ms, requests: rNoopCounts, perTag: { source: perTag(rNoopCounts.source, n), destination: perTag(rNoopCounts.destination, n) } },
            identical: problems.length === 0,
          };
          const ferry = d.ferry as { full: { ms: number }; noop: { ms: number } } | undefined;
          const reqs = (c: { source: Counts; destination: Counts }) => `${((total(c.source) + total(c.destination)) / n).toFixed(2)} requests/tag; ${describeCounts(c.source, c.destination, n)}`;
          sink.rows.push({
            id: `scale-${label}-regsync-full`,
            measurement: `scale ${label} tags: regsync full copy (${(n / (rFull.ms / 1000)).toFixed(1)} tags/s, parallel ${s.concurrency})`,
            value: sec(rFull.ms),
            unit: 's',
            baseline: ferry ? { name: 'Ferry full sync', value: sec(ferry.full.ms), unit: 's' } : undefined,
            ratio: ferry ? rFull.ms / ferry.full.ms : undefined,
            target: 'informative',
            note: `${problems.length ? 'DESTINATION DIFFERS; ' : ''}${reqs(rFullCounts)}`,
          });
          sink.rows.push({
            id: `scale-${label}-regsync-noop`,
            measurement: `scale ${label} tags: regsync no-op (${(n / (rNoop.ms / 1000)).toFixed(1)} tags/s)`,
            value: sec(rNoop.ms),
            unit: 's',
            baseline: ferry ? { name: 'Ferry no-op rerun', value: sec(ferry.noop.ms), unit: 's' } : undefined,
            ratio: ferry ? rNoop.ms / ferry.noop.ms : undefined,
            target: 'informative',
            note: reqs(rNoopCounts),
          });
        } finally {
          await rDest.stop();
        }
      } else if (process.env.BENCH_SKIP_REGSYNC !== '1') {
        sink.notes.push(`scale ${label}: regsync could not be built (no Go?): no regsync rows`);
      }
    } finally {
      await source.stop();
    }
  }
}

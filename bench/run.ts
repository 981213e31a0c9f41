// Ferry's benchmark (`npm run bench`): every figure is a ratio against a baseline measured in the same
// run on the same machine, never an absolute wall-clock limit. See docs/benchmarks.md.
//
//   1. data set: ~16 repositories x 3 tags, shared base layers, ~600 MB unique (BENCH_SCALE), cached
//   2. link: Ferry → WAN emulator (20 ms one way, 400 Mbit/s shared) → token-auth registry
//   3. lower bound: the unique blobs streamed source → destination, 8 at a time, by a raw client
//   4. Ferry full sync / rerun (+ peak RSS); skopeo sync --all full / rerun; regsync once full / rerun
//   5. memory: peak RSS while copying one 1 GiB layer
//   6. bandwidth: transfer.bandwidth under a faster link, 5 s windows and the whole-run average
//   7. resume: SIGKILL half-way, rerun; bytes of both runs / one clean run; destination identical
//   9. workers: three `ferry sync` on one PostgreSQL state against one (bench/workers.ts)
//
// Each measurement runs in its own phase: one that fails (a Ferry bug, a crash) is reported as a
// failed row with its cause and the others still run.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, hostname, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { type Dataset, compareDestination, seedBigImage, seedDataset } from './dataset.js';
import { type BenchSettings, MBIT, MiB, readSettings, wants } from './env.js';
import { assertOk, type FerryRun, ferryBuilt, runFerrySync } from './ferry.js';
import { type Destination, type LinkOptions, startDestination, startSource } from './link.js';
import { runChild } from './proc.js';
import type { RawCopyJob, RawCopyResult } from './raw-copy.js';
import { RawRegistry } from './raw.js';
import { ensureRegsync, regsyncOnce, regsyncVersion } from './regsync.js';
import { type ScaleRow, runScaleScenario } from './scale.js';
import { skopeoSync, skopeoVersion } from './skopeo.js';
import { type Sample, analyseRate } from './windows.js';
import { runWorkersScenario } from './workers.js';

// ---------------------------------------------------------------------------------------------
// results

/** One result row (the scale scenario's rows are the same shape and go into the same table). */
type Row = ScaleRow;

const rows: Row[] = [];
const details: Record<string, unknown> = {};
const notes: string[] = [];
const load: Record<string, { before: number; after: number }> = {};

function log(s: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);
}

const MB = 1_000_000;
const sec = (ms: number): number => Math.round(ms) / 1000;
const mb = (bytes: number): number => Math.round(bytes / 100_000) / 10;
const mbit = (bytesPerSec: number): string => ((bytesPerSec * 8) / MBIT).toFixed(1);

/** Runs one measurement; a failure becomes a MISS row with its cause instead of ending the run. */
async function phase(id: string, title: string, fn: () => Promise<void>): Promise<boolean> {
  const before = loadavg()[0]!;
  try {
    await fn();
    return true;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    log(`${title}: FAILED: ${message}`);
    rows.push({ id, measurement: title, value: null, unit: '', pass: false, note: `FAILED: ${message.split('\n').slice(0, 2).join(' ').slice(0, 200)}` });
    notes.push(`${title} failed: ${message.slice(0, 1500)}`);
    return false;
  } finally {
    load[id] = { before: Math.round(before * 100) / 100, after: Math.round(loadavg()[0]! * 100) / 100 };
  }
}

// ---------------------------------------------------------------------------------------------

interface Context {
  s: BenchSettings;
  link: LinkOptions;
  work: string;
  sourceUrl: string;
  sourceHost: string;
  ds: Dataset;
  logFile(name: string): string | undefined;
  /** Starts a fresh destination; stop(failed) keeps the registry's log when BENCH_LOG_DIR is set. */
  destination(name: string): Promise<Destination & { done(failed?: boolean): Promise<void> }>;
}

async function main(): Promise<void> {
  const s = readSettings();
  const machine = describeMachine();
  log(`machine: ${machine.cpu} x${machine.cores}, ${machine.memoryGiB} GiB, node ${process.version}, load ${loadavg()[0]!.toFixed(2)}`);
  const link: LinkOptions = { delayMs: s.delayMs, bytesPerSec: s.linkBitsPerSec / 8 };
  log(`link: ${s.delayMs} ms one way (${2 * s.delayMs} ms RTT), ${s.linkBitsPerSec / MBIT} Mbit/s; scale ${s.scale}; concurrency ${s.concurrency}`);

  const work = mkdtempSync(join(tmpdir(), 'ferry-bench-'));
  const logDir = s.logDir ? resolve(s.logDir) : '';
  if (logDir) mkdirSync(logDir, { recursive: true });
  const haveFerry = ferryBuilt();
  if (!haveFerry) notes.push('dist/ is missing (run `npm run build`, or use `npm run bench`): Ferry measurements skipped');
  if (s.only.size > 0 && [...s.only].every((x) => x === 'scale')) {
    // The scale scenario alone (BENCH_ONLY=scale): no need for the big data set.
    try {
      if (haveFerry) await phase('scale', 'scale scenario', () => runScaleScenario(s, link, work, { rows, details, notes, log }));
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
    writeResults(s, machine, 'scale');
    return;
  }
  const skopeo = s.skipSkopeo ? undefined : skopeoVersion();
  if (!skopeo && !s.skipSkopeo) notes.push('skopeo is not installed (apt-get install -y skopeo): skopeo measurements skipped');
  const regsyncBin = process.env.BENCH_SKIP_REGSYNC === '1' || !wants(s, 'regsync') ? undefined : ensureRegsync();
  const regsync = regsyncBin ? regsyncVersion(regsyncBin) : undefined;
  if (!regsyncBin && process.env.BENCH_SKIP_REGSYNC !== '1' && wants(s, 'regsync')) notes.push('regsync could not be built (no Go? see scripts/install-go-tools.mjs): regsync measurements skipped');

  // 1. data set (cached) ----------------------------------------------------------------------
  const slug = `${s.seed.replace(/[^A-Za-z0-9._-]/g, '_')}-x${s.scale}`;
  const sourceDir = resolve(s.dataDir, `source-${slug}`);
  mkdirSync(sourceDir, { recursive: true });
  const source = await startSource(join(sourceDir, 'storage'));
  const sourceClient = new RawRegistry({ url: source.url });
  log(`source registry ${source.url} (storage ${sourceDir})`);
  const ds = await seedDataset(sourceClient, s.seed, s.scale, sourceDir, log);
  log(`data set: ${ds.repositories.length} repositories, ${ds.images.length} tags, ${ds.unique.length} unique blobs, ${mb(ds.uniqueBytes)} MB unique`);
  details.dataset = {
    repositories: ds.repositories.length,
    tags: ds.images.length,
    uniqueBlobs: ds.unique.length,
    uniqueBytes: ds.uniqueBytes,
    blobReferences: ds.images.reduce((n, i) => n + i.blobs.length, 0),
    largestBlob: Math.max(...ds.unique.map((b) => b.size)),
  };

  const ctx: Context = {
    s,
    link,
    work,
    sourceUrl: source.url,
    sourceHost: source.host,
    ds,
    logFile: (name) => (logDir ? join(logDir, `${name}.log`) : undefined),
    async destination(name) {
      const dest = await startDestination(link);
      return Object.assign(dest, {
        done: (failed = false) => dest.stop(failed && logDir ? join(logDir, `registry-${name}.log`) : undefined),
      });
    },
  };

  const keep: (() => Promise<void>)[] = [];
  try {
    // 3 + 4. lower bound and Ferry's full sync, alternating BENCH_REPEAT times; best of each ------
    let lowerBound: RawCopyResult | undefined;
    let full: { run: FerryRun; bytesUp: number; stateDir: string; dir: string; dest: Destination & { done(f?: boolean): Promise<void> } } | undefined;
    const lbTimes: number[] = [];
    const fullTimes: number[] = [];
    for (let i = 0; i < s.repeat; i++) {
      if (wants(s, 'lower-bound') || wants(s, 'full')) {
        await phase('lower-bound', 'lower bound (raw client)', async () => {
          const lb = await measureLowerBound(ctx);
          lbTimes.push(lb.ms);
          log(`lower bound: ${sec(lb.ms)} s (${mb(lb.bytes)} MB, ${mbit((lb.bytes / lb.ms) * 1000)} Mbit/s)`);
          if (!lowerBound || lb.ms < lowerBound.ms) lowerBound = lb;
        });
      }
      if (haveFerry && (wants(s, 'full') || wants(s, 'rerun') || wants(s, 'resume'))) {
        await phase('full', 'Ferry full sync', async () => {
          const dest = await ctx.destination(`full-${i}`);
          const stateDir = join(work, `state-full-${i}`);
          const dir = join(work, `full-${i}`);
          try {
            const run = await runFerrySync({ dir, sourceUrl: source.url, destinationUrl: dest.url, stateDir, transfer: { concurrency: s.concurrency }, logFile: ctx.logFile(`full-${i}`) });
            assertOk(run, 'full sync');
            const problems = await compareDestination(dest.client(), ds, (r) => r);
            if (problems.length) throw new Error(`the destination differs from the source: ${problems.slice(0, 3).join('; ')}`);
            const bytesUp = dest.wan.bytesUp;
            fullTimes.push(run.ms);
            log(`ferry full sync: ${sec(run.ms)} s, peak RSS ${mb(run.peakRss)} MB, ${mb(bytesUp)} MB through the link, blobs ${JSON.stringify(run.report?.totals.blobs)}`);
            if (!full || run.ms < full.run.ms) {
              if (full) await full.dest.done();
              full = { run, bytesUp, stateDir, dir, dest };
            } else await dest.done();
          } catch (err) {
            await dest.done(true);
            throw err;
          }
        });
      }
    }
    if (full) keep.push(() => full!.dest.done());
    if (lowerBound) {
      details.lowerBound = { ...lowerBound, allMs: lbTimes };
      rows.push({
        id: 'lower-bound',
        measurement: `lower bound: ${ds.unique.length} unique blobs (${mb(ds.uniqueBytes)} MB), raw client, ${s.concurrency} at a time`,
        value: sec(lowerBound.ms),
        unit: 's',
        note: `${mbit((lowerBound.bytes / lowerBound.ms) * 1000)} Mbit/s on a ${s.linkBitsPerSec / MBIT} Mbit/s link`,
      });
    }
    if (full) {
      const { run } = full;
      details.full = { ms: run.ms, allMs: fullTimes, peakRss: run.peakRss, bytesThroughLink: full.bytesUp, report: { durationMs: run.report?.durationMs, totals: run.report?.totals } };
      if (lowerBound) rows.push(ratioRow('full', 'Ferry full sync (CLI child process, wall clock)', run.ms, { name: 'lower bound', ms: lowerBound.ms }, 1.25));
      rows.push({ id: 'full-rss', measurement: 'Ferry peak RSS during the full sync', value: mb(run.peakRss), unit: 'MB', target: '< 200 MB', pass: run.peakRss < 200 * MB });
    }

    // rerun with nothing to do: with the journal (normal), and without it (HEADs only) -------------
    let rerunMs: number | undefined;
    let coldRerunMs: number | undefined;
    if (full && (wants(s, 'rerun') || wants(s, 'skopeo') || wants(s, 'regsync'))) {
      const f = full;
      await phase('rerun', 'Ferry rerun', async () => {
        const before = f.dest.wan.bytesUp;
        const rerun = await runFerrySync({ dir: f.dir, sourceUrl: source.url, destinationUrl: f.dest.url, stateDir: f.stateDir, transfer: { concurrency: s.concurrency }, logFile: ctx.logFile('rerun') });
        const report = assertOk(rerun, 'rerun');
        log(`ferry rerun (journal): ${sec(rerun.ms)} s, artifacts ${JSON.stringify(report.totals.artifacts)}, ${mb(f.dest.wan.bytesUp - before)} MB up`);
        const cold = await runFerrySync({ dir: f.dir, sourceUrl: source.url, destinationUrl: f.dest.url, stateDir: join(work, 'state-rerun-cold'), transfer: { concurrency: s.concurrency }, logFile: ctx.logFile('rerun-cold') });
        const coldReport = assertOk(cold, 'rerun without journal');
        log(`ferry rerun (no journal): ${sec(cold.ms)} s, artifacts ${JSON.stringify(coldReport.totals.artifacts)}`);
        details.rerun = { ms: rerun.ms, totals: report.totals, coldMs: cold.ms, coldTotals: coldReport.totals };
        rerunMs = rerun.ms;
        coldRerunMs = cold.ms;
      });
    }

    // copy by chunk (informative: what chunked uploads cost on this link) --------------------------
    const chunk = process.env.BENCH_CHUNK ?? '16MiB';
    if (haveFerry && wants(s, 'chunked') && chunk !== '0' && chunk !== '') {
      await phase('chunked', `Ferry full sync, chunkSize ${chunk}`, async () => {
        const dest = await ctx.destination('chunked');
        let failed = true;
        try {
          const run = await runFerrySync({ dir: join(work, 'chunked'), sourceUrl: source.url, destinationUrl: dest.url, stateDir: join(work, 'state-chunked'), transfer: { concurrency: s.concurrency, chunkSize: chunk }, logFile: ctx.logFile('chunked') });
          assertOk(run, 'chunked sync');
          const problems = await compareDestination(dest.client(), ds, (r) => r);
          if (problems.length) throw new Error(`the destination differs from the source: ${problems.slice(0, 3).join('; ')}`);
          log(`ferry full sync, chunkSize ${chunk}: ${sec(run.ms)} s, peak RSS ${mb(run.peakRss)} MB`);
          details.chunked = { chunkSize: chunk, ms: run.ms, peakRss: run.peakRss, bytesThroughLink: dest.wan.bytesUp };
          if (lowerBound) rows.push(ratioRow('chunked', `Ferry full sync, chunkSize ${chunk}`, run.ms, { name: 'lower bound', ms: lowerBound.ms }, undefined, 'informative'));
          failed = false;
        } finally {
          await dest.done(failed);
        }
      });
    }

    // skopeo ------------------------------------------------------------------------------------
    if (skopeo && wants(s, 'skopeo')) {
      await phase('skopeo', 'skopeo sync --all', async () => {
        const dest = await ctx.destination('skopeo');
        try {
          log(`${skopeo}: full sync of ${ds.repositories.length} repositories`);
          const first = await skopeoSync(source.host, dest.host, ds.repositories);
          const bytes = dest.wan.bytesUp;
          log(`skopeo full sync: ${sec(first.ms)} s, ${mb(bytes)} MB through the link, peak RSS ${mb(first.peakRss)} MB`);
          const again = await skopeoSync(source.host, dest.host, ds.repositories);
          log(`skopeo rerun: ${sec(again.ms)} s`);
          const problems = await compareDestination(dest.client(), ds, (r) => r);
          details.skopeo = { version: skopeo, ms: first.ms, rerunMs: again.ms, bytesThroughLink: bytes, peakRss: first.peakRss, identical: problems.length === 0, differences: problems.slice(0, 5) };
          if (problems.length) notes.push(`skopeo's copy differs from the source (${problems.length} differences, e.g. ${problems[0]})`);
          if (lowerBound) rows.push(ratioRow('skopeo', 'skopeo sync --all, full (one run per repository)', first.ms, { name: 'lower bound', ms: lowerBound.ms }, undefined, '~6x (issue)'));
          if (full) rows.push(ratioRow('ferry-vs-skopeo', 'Ferry full sync vs skopeo full sync', full.run.ms, { name: 'skopeo full', ms: first.ms }, undefined, 'informative'));
          rows.push({ id: 'skopeo-rerun', measurement: 'skopeo rerun, nothing to do', value: sec(again.ms), unit: 's' });
          if (rerunMs !== undefined) rows.push(ratioRow('rerun', 'Ferry rerun, nothing to do (journal)', rerunMs, { name: 'skopeo rerun', ms: again.ms }, 1, '< 1x'));
          if (coldRerunMs !== undefined) rows.push(ratioRow('rerun-cold', 'Ferry rerun, nothing to do, no journal', coldRerunMs, { name: 'skopeo rerun', ms: again.ms }, 1, '< 1x'));
        } finally {
          await dest.done();
        }
      });
    } else if (rerunMs !== undefined) {
      rows.push({ id: 'rerun', measurement: 'Ferry rerun, nothing to do (journal)', value: sec(rerunMs), unit: 's', note: 'no skopeo to compare with' });
    }

    // regsync ------------------------------------------------------------------------------------
    if (regsyncBin && wants(s, 'regsync')) {
      await phase('regsync', 'regsync once', async () => {
        const dest = await ctx.destination('regsync');
        try {
          log(`${regsync}: full sync of the source registry (type: registry, parallel ${s.concurrency})`);
          const first = await regsyncOnce(regsyncBin, work, source.host, dest.host, s.concurrency);
          const bytes = dest.wan.bytesUp;
          log(`regsync full sync: ${sec(first.ms)} s, ${mb(bytes)} MB through the link, peak RSS ${mb(first.peakRss)} MB`);
          const again = await regsyncOnce(regsyncBin, work, source.host, dest.host, s.concurrency);
          log(`regsync rerun: ${sec(again.ms)} s`);
          const problems = await compareDestination(dest.client(), ds, (r) => r);
          details.regsync = { version: regsync, ms: first.ms, rerunMs: again.ms, bytesThroughLink: bytes, peakRss: first.peakRss, identical: problems.length === 0, differences: problems.slice(0, 5) };
          if (problems.length) notes.push(`regsync's copy differs from the source (${problems.length} differences, e.g. ${problems[0]})`);
          if (lowerBound) rows.push(ratioRow('regsync', `regsync once, full (type: registry, parallel ${s.concurrency})`, first.ms, { name: 'lower bound', ms: lowerBound.ms }, undefined, 'informative'));
          if (full) rows.push(ratioRow('ferry-vs-regsync', 'Ferry full sync vs regsync full sync', full.run.ms, { name: 'regsync full', ms: first.ms }, undefined, 'informative'));
          rows.push({ id: 'regsync-rss', measurement: 'regsync peak RSS during the full sync', value: mb(first.peakRss), unit: 'MB' });
          rows.push({ id: 'regsync-rerun', measurement: 'regsync rerun, nothing to do', value: sec(again.ms), unit: 's' });
          if (rerunMs !== undefined) rows.push(ratioRow('rerun-vs-regsync', 'Ferry rerun, nothing to do (journal) vs regsync rerun', rerunMs, { name: 'regsync rerun', ms: again.ms }, 1, '< 1x'));
        } finally {
          await dest.done();
        }
      });
    }

    // 7. resume ---------------------------------------------------------------------------------
    if (full && wants(s, 'resume')) {
      const clean = full.bytesUp;
      const resumeDetails: Record<string, ResumeResult> = {};
      details.resume = resumeDetails;
      for (const variant of resumeVariants(s)) {
        const title = `resume after SIGKILL at ${Math.round(s.killAt * 100)}% (${variant.name}): bytes of both runs`;
        await phase(`resume-${variant.id}`, title, async () => {
          const r = await measureResume(ctx, clean, variant);
          resumeDetails[variant.id] = r;
          log(`resume (${variant.name}): killed at ${mb(r.firstBytes)} MB, rerun sent ${mb(r.secondBytes)} MB; ${(r.ratio * 100).toFixed(1)}% of a clean run; identical: ${r.problems.length === 0}`);
          rows.push(resumeRow(`resume-${variant.id}`, title, r, clean, 1.1));
        });
      }
    }

    // 6. bandwidth accuracy -----------------------------------------------------------------------
    if (haveFerry && wants(s, 'bandwidth')) {
      await phase('bandwidth', `bandwidth cap ${s.throttleBitsPerSec / MBIT} Mbit/s`, () => measureBandwidth(ctx));
    }

    // 5. memory: one big layer ----------------------------------------------------------------
    if (haveFerry && wants(s, 'memory')) {
      await phase('memory', `Ferry peak RSS copying one ${Math.round(s.bigLayerBytes / MiB)} MiB layer`, () => measureMemory(ctx, full?.run.peakRss));
    }
    // 8. scale: catalogs of small images against the minimal client ---------------------------------
    if (haveFerry && wants(s, 'scale')) {
      await phase('scale', 'scale scenario', () => runScaleScenario(s, link, work, { rows, details, notes, log }));
    }
    // 9. workers: three processes sharing one run on PostgreSQL against one -----------------------
    if (haveFerry && wants(s, 'workers')) {
      await phase('workers', 'workers scenario', () => runWorkersScenario(ctx, { rows, details, notes, log }));
    }
  } finally {
    for (const k of keep) await k().catch(() => undefined);
    await sourceClient.close();
    await source.stop();
    rmSync(work, { recursive: true, force: true });
  }

  const onlyWorkers = s.only.size > 0 && [...s.only].every((x) => x === 'workers');
  writeResults(s, machine, [onlyWorkers ? 'workers' : '', s.scale === 1 ? '' : `scale${s.scale}`].filter(Boolean).join('-'));
}

/** Prints the table and writes bench/results/<date>[-suffix].json. */
function writeResults(s: BenchSettings, machine: Record<string, unknown>, suffix: string): void {
  process.stdout.write(`\n${formatTable(rows)}\n`);
  for (const n of notes) process.stdout.write(`note: ${n}\n`);
  const date = new Date();
  const resultsDir = resolve(s.resultsDir);
  mkdirSync(resultsDir, { recursive: true });
  const file = join(resultsDir, `${date.toISOString().slice(0, 10)}${suffix ? `-${suffix}` : ''}.json`);
  writeFileSync(file, `${JSON.stringify({ date: date.toISOString(), commit: gitCommit(), settings: { ...s, only: [...s.only] }, machine, rows, notes, load, details }, null, 2)}\n`);
  process.stdout.write(`results written to ${file}\n`);
}

// ---------------------------------------------------------------------------------------------
// measurements

async function measureLowerBound(ctx: Context): Promise<RawCopyResult> {
  return rawCopy(ctx, { url: ctx.sourceUrl }, ctx.ds);
}

/**
 * The raw client (bench/raw-copy.ts, its own process) copies every unique blob of `ds` into a fresh
 * destination. Largest first: the best schedule for N parallel lanes (no lane is left alone with a
 * big blob at the end), so this is the best a raw client does, not a typical one.
 */
async function rawCopy(ctx: Context, source: { url: string }, ds: Dataset): Promise<RawCopyResult & { peakRss: number }> {
  const dest = await ctx.destination('raw-copy');
  let failed = true;
  try {
    const job: RawCopyJob = {
      source,
      destination: { url: dest.url, username: 'ferry', password: 's3cret' },
      concurrency: ctx.s.concurrency,
      blobs: [...ds.unique].sort((a, b) => b.size - a.size).map((b) => ({ digest: b.digest, size: b.size, sourceRepo: b.repo, destinationRepo: b.repo })),
    };
    const file = join(ctx.work, `raw-copy-${Date.now()}.json`);
    writeFileSync(file, JSON.stringify(job));
    const res = await runChild(process.execPath, ['--import', 'tsx', 'bench/raw-copy.ts', file]);
    if (res.code !== 0) throw new Error(`raw copy failed (${res.code}): ${res.stderrTail}`);
    failed = false;
    return { ...(JSON.parse(res.stdout.trim().split('\n').pop() ?? '{}') as RawCopyResult), peakRss: res.peakRss };
  } finally {
    await dest.done(failed);
  }
}

interface ResumeVariant {
  id: string;
  name: string;
  transfer: Record<string, unknown>;
  /** How the first run is stopped (default SIGKILL). */
  signal?: NodeJS.Signals;
}

function resumeVariants(s: BenchSettings): ResumeVariant[] {
  const variants: ResumeVariant[] = [{ id: 'default', name: 'default settings', transfer: { concurrency: s.concurrency } }];
  const chunk = process.env.BENCH_RESUME_CHUNK ?? '8MiB';
  if (chunk !== '0' && chunk !== '') {
    variants.push({ id: 'chunked', name: `chunkSize ${chunk}, resumeThreshold ${chunk}`, transfer: { concurrency: s.concurrency, chunkSize: chunk, resumeThreshold: chunk } });
  }
  return variants;
}

interface ResumeResult {
  firstBytes: number;
  secondBytes: number;
  ratio: number;
  firstMs: number;
  secondMs: number;
  killed: boolean;
  secondReport: unknown;
  problems: string[];
  /** distribution logged "upload resumed at wrong offest" (it then cancels the session). */
  sessionsRefused: number;
}

async function measureResume(
  ctx: Context,
  cleanBytes: number,
  variant: ResumeVariant,
  from: { url: string; ds: Dataset } = { url: ctx.sourceUrl, ds: ctx.ds },
  killOffset = 0,
): Promise<ResumeResult> {
  const dest = await ctx.destination(`resume-${variant.id}`);
  let failed = true;
  try {
    const stateDir = join(ctx.work, `state-resume-${variant.id}`);
    const dir = join(ctx.work, `resume-${variant.id}`);
    const threshold = cleanBytes * ctx.s.killAt + killOffset;
    const first = await runFerrySync({ dir, sourceUrl: from.url, destinationUrl: dest.url, stateDir, transfer: variant.transfer, logFile: ctx.logFile(`resume-${variant.id}-1`), killWhen: () => dest.wan.bytesUp >= threshold, killSignal: variant.signal });
    if (!first.killed) notes.push(`resume (${variant.name}): the first run finished before reaching ${Math.round(ctx.s.killAt * 100)}% and was not killed`);
    // Bytes already inside the emulated link still reach the registry after the kill: count them
    // for the first run.
    await new Promise((r) => setTimeout(r, 1000 + 4 * ctx.s.delayMs));
    const firstBytes = dest.wan.bytesUp;
    const second = await runFerrySync({ dir, sourceUrl: from.url, destinationUrl: dest.url, stateDir, transfer: variant.transfer, logFile: ctx.logFile(`resume-${variant.id}-2`) });
    const report = assertOk(second, 'resumed sync');
    const total = dest.wan.bytesUp;
    const problems = await compareDestination(dest.client(), from.ds, (r) => r);
    // Keep the registry's log either way (with BENCH_LOG_DIR): it says why a session could not resume.
    failed = true;
    return {
      firstBytes,
      secondBytes: total - firstBytes,
      ratio: total / cleanBytes,
      firstMs: first.ms,
      secondMs: second.ms,
      killed: first.killed,
      sessionsRefused: (dest.registry.logs().match(/upload resumed at wrong offest/g) ?? []).length,
      secondReport: { totals: report.totals, durationMs: report.durationMs },
      problems,
    };
  } finally {
    await dest.done(failed);
  }
}

async function measureBandwidth(ctx: Context): Promise<void> {
  const { s } = ctx;
  const cap = s.throttleBitsPerSec / 8;
  const capMbit = s.throttleBitsPerSec / MBIT;
  const dest = await ctx.destination('bandwidth');
  let failed = true;
  try {
    const samples: Sample[] = [];
    const run = await runFerrySync({
      dir: join(ctx.work, 'bandwidth'),
      sourceUrl: ctx.sourceUrl,
      destinationUrl: dest.url,
      stateDir: join(ctx.work, 'state-bandwidth'),
      transfer: { concurrency: s.concurrency, bandwidth: `${capMbit}Mbps` },
      logFile: ctx.logFile('bandwidth'),
      onPoll: () => samples.push({ t: performance.now(), bytes: dest.wan.bytesUp }),
    });
    assertOk(run, 'throttled sync');
    const a = analyseRate(samples, cap);
    log(`bandwidth: cap ${capMbit} Mbit/s; average ${mbit(a.average)} Mbit/s over ${sec(a.toMs - a.fromMs)} s; 5 s windows ${mbit(a.minWindow)}..${mbit(a.maxWindow)} Mbit/s (${a.windows} windows)`);
    details.bandwidth = { cap, ...a, ms: run.ms, sampleCount: samples.length, series: thin(samples, 500) };
    if (a.windows === 0) notes.push('bandwidth: the throttled transfer was shorter than one 5 s window (raise BENCH_SCALE)');
    const worst = Math.abs(a.minWindow / cap - 1) > Math.abs(a.maxWindow / cap - 1) ? a.minWindow : a.maxWindow;
    rows.push({
      id: 'bandwidth-windows',
      measurement: `bandwidth cap ${capMbit} Mbit/s on the ${s.linkBitsPerSec / MBIT} Mbit/s link: worst 5 s window`,
      value: Number(mbit(worst)),
      unit: 'Mbit/s',
      baseline: { name: 'cap', value: capMbit, unit: 'Mbit/s' },
      ratio: worst / cap,
      target: 'within 10%',
      pass: a.maxDeviation <= 0.1,
      note: `${a.windows} windows, ${mbit(a.minWindow)}..${mbit(a.maxWindow)} Mbit/s`,
    });
    rows.push({
      id: 'bandwidth-average',
      measurement: `bandwidth cap ${capMbit} Mbit/s: average over the run`,
      value: Number(mbit(a.average)),
      unit: 'Mbit/s',
      baseline: { name: 'cap', value: capMbit, unit: 'Mbit/s' },
      ratio: a.average / cap,
      target: 'within 5%',
      pass: a.averageDeviation <= 0.05,
      note: `over ${sec(a.toMs - a.fromMs)} s (1%..99% of the bytes)`,
    });
    failed = false;
  } finally {
    await dest.done(failed);
  }
}

async function measureMemory(ctx: Context, fullRss: number | undefined): Promise<void> {
  const { s } = ctx;
  const mib = Math.round(s.bigLayerBytes / MiB);
  const bigDir = resolve(s.dataDir, `big-${s.seed.replace(/[^A-Za-z0-9._-]/g, '_')}-${mib}MiB`);
  mkdirSync(bigDir, { recursive: true });
  const bigSource = await startSource(join(bigDir, 'storage'));
  const client = new RawRegistry({ url: bigSource.url });
  const dest = await ctx.destination('memory');
  let failed = true;
  try {
    const big = await seedBigImage(client, s.seed, s.bigLayerBytes, bigDir, log);
    const run = await runFerrySync({ dir: join(ctx.work, 'memory'), sourceUrl: bigSource.url, destinationUrl: dest.url, stateDir: join(ctx.work, 'state-memory'), transfer: { concurrency: s.concurrency }, logFile: ctx.logFile('memory') });
    assertOk(run, 'big layer sync');
    const problems = await compareDestination(dest.client(), big, (r) => r);
    if (problems.length) throw new Error(`big layer copy differs: ${problems.join('; ')}`);
    log(`memory: ${mib} MiB layer copied in ${sec(run.ms)} s, peak RSS ${mb(run.peakRss)} MB`);
    // The same layer by the raw client: one stream's speed over this link (a 40 ms RTT caps what one
    // connection can carry), so Ferry's time for the big layer has a baseline too.
    const raw = await rawCopy(ctx, { url: bigSource.url }, big);
    log(`memory: the raw client copied the same layer in ${sec(raw.ms)} s (peak RSS ${mb(raw.peakRss)} MB)`);
    details.memory = { layerBytes: s.bigLayerBytes, ms: run.ms, peakRss: run.peakRss, bytesThroughLink: dest.wan.bytesUp, raw };
    const cleanBytes = dest.wan.bytesUp;
    rows.push(ratioRow('big-layer-time', `Ferry copy time of the ${mib} MiB layer`, run.ms, { name: 'raw client', ms: raw.ms }, undefined, 'informative'));
    rows.push({
      id: 'memory',
      measurement: `Ferry peak RSS copying one ${mib} MiB layer`,
      value: mb(run.peakRss),
      unit: 'MB',
      baseline: fullRss ? { name: 'RSS, full sync', value: mb(fullRss), unit: 'MB' } : undefined,
      ratio: fullRss ? run.peakRss / fullRss : undefined,
      target: '< 200 MB',
      pass: run.peakRss < 200 * MB,
      note: `copy took ${sec(run.ms)} s (${mbit((s.bigLayerBytes / run.ms) * 1000)} Mbit/s)`,
    });
    failed = false;
    if (wants(s, 'resume')) {
      // Mid-blob resume: the same layer, copied by chunk (default resumeThreshold 64 MiB), killed
      // half-way and run again.
      const chunk = process.env.BENCH_CHUNK || '16MiB';
      const variant: ResumeVariant = { id: 'big', name: `one ${mib} MiB layer, chunkSize ${chunk}`, transfer: { concurrency: s.concurrency, chunkSize: chunk } };
      const title = `resume after SIGKILL at ${Math.round(s.killAt * 100)}% (${variant.name}): bytes of both runs`;
      await phase('resume-big', title, async () => {
        // Half a chunk further: 50% of a power-of-two layer is a chunk boundary, and a kill exactly
        // there is a special case; most of the time a chunk is on the wire.
        const r = await measureResume(ctx, cleanBytes, variant, { url: bigSource.url, ds: big }, sizeBytes(chunk) / 2);
        (details.resume as Record<string, unknown> | undefined) ?? (details.resume = {});
        (details.resume as Record<string, unknown>).big = r;
        log(`resume (${variant.name}): killed at ${mb(r.firstBytes)} MB, rerun sent ${mb(r.secondBytes)} MB; ${(r.ratio * 100).toFixed(1)}% of a clean run; identical: ${r.problems.length === 0}`);
        rows.push(resumeRow('resume-big', title, r, cleanBytes, 1.1));
      });
      // A graceful stop with the default settings (big blobs resumable, no chunkSize): SIGTERM, a grace
      // period shorter than the rest of the layer, then a rerun from the checkpoint.
      const term: ResumeVariant = { id: 'term-big', name: `one ${mib} MiB layer, default settings, gracePeriod 2 s`, transfer: { concurrency: s.concurrency, gracePeriod: 2 }, signal: 'SIGTERM' };
      const termTitle = `SIGTERM at ${Math.round(s.killAt * 100)}% then rerun (${term.name}): bytes of both runs`;
      await phase('resume-term-big', termTitle, async () => {
        const r = await measureResume(ctx, cleanBytes, term, { url: bigSource.url, ds: big });
        (details.resume as Record<string, unknown> | undefined) ?? (details.resume = {});
        (details.resume as Record<string, unknown>).termBig = r;
        log(`resume (${term.name}): stopped at ${mb(r.firstBytes)} MB, rerun sent ${mb(r.secondBytes)} MB; ${(r.ratio * 100).toFixed(1)}% of a clean run; identical: ${r.problems.length === 0}`);
        rows.push(resumeRow('resume-term-big', termTitle, r, cleanBytes, 1.05));
      });
    }
  } finally {
    await dest.done(failed);
    await client.close();
    await bigSource.stop();
  }
}

/** "16MiB", "8MB", "1048576" → bytes (only what the knobs need). */
function sizeBytes(v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(|b|kb|kib|mb|mib|gb|gib)$/i.exec(v.trim());
  if (!m) throw new Error(`cannot parse size ${JSON.stringify(v)}`);
  const unit = { '': 1, b: 1, kb: 1e3, kib: 1024, mb: 1e6, mib: MiB, gb: 1e9, gib: 1024 * MiB }[m[2]!.toLowerCase()]!;
  return Number(m[1]) * unit;
}

/** The result row of a resume measurement: bytes of both runs against a clean run, at most `limit` times. */
function resumeRow(id: string, measurement: string, r: ResumeResult, cleanBytes: number, limit: number): Row {
  return {
    id,
    measurement,
    value: mb(r.firstBytes + r.secondBytes),
    unit: 'MB',
    baseline: { name: 'clean run', value: mb(cleanBytes), unit: 'MB' },
    ratio: r.ratio,
    target: `<= ${limit.toFixed(2)}x, identical`,
    pass: r.ratio <= limit && r.problems.length === 0,
    note: resumeNote(r),
  };
}

function resumeNote(r: ResumeResult): string {
  const parts = [r.problems.length === 0 ? 'destination identical' : `DIFFERS: ${r.problems[0]}`];
  if (!r.killed) parts.push('first run was NOT killed');
  if (r.sessionsRefused) parts.push(`registry refused ${r.sessionsRefused} upload session(s) to resume: "upload resumed at wrong offset"`);
  return parts.join('; ');
}

// ---------------------------------------------------------------------------------------------
// formatting

function ratioRow(id: string, measurement: string, ms: number, baseline: { name: string; ms: number }, max: number | undefined, target?: string): Row {
  const ratio = ms / baseline.ms;
  return {
    id,
    measurement,
    value: sec(ms),
    unit: 's',
    baseline: { name: baseline.name, value: sec(baseline.ms), unit: 's' },
    ratio,
    target: target ?? (max !== undefined ? `<= ${max}x` : undefined),
    pass: max === undefined ? undefined : target === '< 1x' ? ratio < max : ratio <= max,
  };
}

export function formatTable(list: Row[]): string {
  const header = ['measurement', 'value', 'baseline', 'ratio', 'target', 'result'];
  const body = list.map((r) => [
    r.measurement,
    r.value === null ? '—' : `${r.value} ${r.unit}`,
    r.baseline ? `${r.baseline.value} ${r.baseline.unit} (${r.baseline.name})` : '',
    r.ratio !== undefined ? `${r.ratio.toFixed(2)}x` : '',
    r.target ?? '',
    r.pass === undefined ? (r.note ?? '') : `${r.pass ? 'PASS' : 'MISS'}${r.note ? ` (${r.note})` : ''}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

function thin(samples: Sample[], everyMs: number): [number, number][] {
  const out: [number, number][] = [];
  const t0 = samples[0]?.t ?? 0;
  let next = t0;
  for (const x of samples) {
    if (x.t >= next) {
      out.push([Math.round(x.t - t0), x.bytes]);
      next = x.t + everyMs;
    }
  }
  return out;
}

function describeMachine(): Record<string, unknown> & { cpu: string; cores: number; memoryGiB: number } {
  const registry = spawnSync(process.env.FERRY_REGISTRY_BIN ?? '/usr/bin/docker-registry', ['--version'], { encoding: 'utf8' });
  return {
    host: hostname(),
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 1024 ** 3),
    kernel: release(),
    node: process.version,
    registry: registry.stdout?.trim() || 'unknown',
    skopeo: skopeoVersion() ?? 'not installed',
    regsync: (() => {
      const bin = process.env.BENCH_SKIP_REGSYNC === '1' ? undefined : ensureRegsync();
      return (bin && regsyncVersion(bin)) ?? 'not installed';
    })(),
  };
}

function gitCommit(): string | undefined {
  const r = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

main().then(
  () => process.exit(rows.some((r) => r.value === null) ? 1 : 0),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    if (rows.length) process.stdout.write(`\npartial results:\n${formatTable(rows)}\n`);
    process.exit(1);
  },
);

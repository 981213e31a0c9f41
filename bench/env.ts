// Benchmark knobs, all from the environment so `npm run bench` needs no arguments.
// See docs/benchmarks.md for what each one changes.

export interface BenchSettings {
  /** Multiplies every blob size of the data set (1 = ~600 MB of unique blobs). */
  scale: number;
  /** Seed of the deterministic data set (same seed + scale = same bytes, same digests). */
  seed: string;
  /** One-way delay of the emulated WAN between Ferry and the destination (RTT = 2x). */
  delayMs: number;
  /** Shared bandwidth cap of the emulated WAN, bits per second (per direction). */
  linkBitsPerSec: number;
  /** `transfer.bandwidth` for the throttling measurement, bits per second. */
  throttleBitsPerSec: number;
  /** Size of the single layer of the memory measurement, bytes. */
  bigLayerBytes: number;
  /** Blob copies in flight, for Ferry (`transfer.concurrency`) and the raw lower-bound client alike. */
  concurrency: number;
  /** Where during the resume measurement the first run is SIGKILLed (fraction of a clean run's bytes). */
  killAt: number;
  /** How often the lower bound and Ferry's full sync are measured (the best of each is reported). */
  repeat: number;
  /** Measurements to run (empty = all): lower-bound,full,rerun,chunked,skopeo,regsync,resume,bandwidth,memory,scale,workers. */
  only: Set<string>;
  /** Skip skopeo even when installed. */
  skipSkopeo: boolean;
  /** Cache of generated source registries (reused across runs). */
  dataDir: string;
  /** Where the JSON results go. */
  resultsDir: string;
  /** Keep the Ferry child's stderr (pino logs) in this directory; empty = discard. */
  logDir: string;
}

function num(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v) || v < 0) throw new Error(`${name}=${raw}: expected a non-negative number`);
  return v;
}

export const MBIT = 1_000_000;
export const MiB = 1024 * 1024;

export function readSettings(): BenchSettings {
  const scale = num('BENCH_SCALE', 1);
  if (scale <= 0) throw new Error('BENCH_SCALE must be > 0');
  const only = new Set(
    (process.env.BENCH_ONLY ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  );
  return {
    scale,
    seed: process.env.BENCH_SEED || 'ferry-bench-1',
    delayMs: num('BENCH_DELAY_MS', 20),
    linkBitsPerSec: num('BENCH_LINK_MBPS', 400) * MBIT,
    throttleBitsPerSec: num('BENCH_THROTTLE_MBPS', 100) * MBIT,
    bigLayerBytes: Math.round(num('BENCH_BIG_MIB', 1024) * MiB),
    concurrency: Math.max(1, Math.round(num('BENCH_CONCURRENCY', 8))),
    killAt: num('BENCH_KILL_AT', 0.5),
    repeat: Math.max(1, Math.round(num('BENCH_REPEAT', 1))),
    only,
    skipSkopeo: process.env.BENCH_SKIP_SKOPEO === '1',
    dataDir: process.env.BENCH_DATA_DIR || 'bench/.data',
    resultsDir: process.env.BENCH_RESULTS_DIR || 'bench/results',
    logDir: process.env.BENCH_LOG_DIR ?? '',
  };
}

export function wants(s: BenchSettings, name: string): boolean {
  return s.only.size === 0 || s.only.has(name);
}

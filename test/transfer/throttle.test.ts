// The token bucket: the algorithm on a simulated clock (exact: 5 s windows within 10% of the cap, the
// run within 5%, with many streams and a cap changed at run time), then real streams on the real
// clock with loose bounds that hold on a loaded machine. Precise figures on the wire are the
// benchmark's job (bench/run.ts, scenario "bandwidth"), not the tests'.
import { getEventListeners } from 'node:events';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { TokenBucket, effectiveRate, throttled } from '../../src/transfer/throttle.js';

const MB = 1_000_000;

describe('TokenBucket on a simulated clock', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  /** Runs `streams` greedy senders of `chunk`-byte pieces for `seconds`; returns (time ms, bytes) releases. */
  async function simulate(bucket: TokenBucket, streams: number, chunk: number | ((i: number) => number), seconds: number, during?: (t: number) => void) {
    const releases: [number, number][] = [];
    const start = performance.now();
    let stop = false;
    const senders = Array.from({ length: streams }, async (_, i) => {
      let n = 0;
      while (!stop) {
        const size = typeof chunk === 'number' ? chunk : chunk(i * 1000 + n++);
        await bucket.take(size);
        if (stop) return;
        releases.push([performance.now() - start, size]);
      }
    });
    for (let t = 0; t < seconds * 1000; t += 100) {
      during?.(t);
      await vi.advanceTimersByTimeAsync(100);
    }
    stop = true;
    bucket.setRate(0); // release the waiters
    await Promise.all(senders);
    return releases;
  }

  function windows(releases: [number, number][], fromMs: number, toMs: number, windowMs: number): number[] {
    const out: number[] = [];
    for (let t = fromMs; t + windowMs <= toMs; t += 250) {
      out.push(releases.filter(([at]) => at >= t && at < t + windowMs).reduce((n, [, b]) => n + b, 0));
    }
    return out;
  }

  it('holds 8 streams to the cap: every 5 s window within 10%, the run within 5%', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const rate = 25 * MB;
    const bucket = new TokenBucket(rate);
    // Uneven chunk sizes, some larger than the burst (2.5 MB here): the debt keeps the average exact.
    const releases = await simulate(bucket, 8, (i) => [65_536, 16_384, 1_048_576, 3_000_000, 200_000][i % 5]!, 60);
    const total = releases.reduce((n, [, b]) => n + b, 0);
    expect(Math.abs(total / 60 - rate) / rate).toBeLessThan(0.05);
    for (const bytes of windows(releases, 0, 60_000, 5000)) {
      expect(Math.abs(bytes / 5 - rate) / rate).toBeLessThan(0.1);
    }
  });

  it('follows a cap changed at run time, for the streams already waiting', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const bucket = new TokenBucket(10 * MB);
    const releases = await simulate(bucket, 4, 65_536, 30, (t) => {
      if (t === 10_000) bucket.setRate(2 * MB);
      if (t === 20_000) bucket.setRate(40 * MB);
    });
    const sum = (from: number, to: number) => releases.filter(([at]) => at >= from && at < to).reduce((n, [, b]) => n + b, 0);
    expect(sum(1000, 10_000) / 9).toBeGreaterThan(0.95 * 10 * MB);
    expect(sum(1000, 10_000) / 9).toBeLessThan(1.05 * 10 * MB);
    expect(sum(11_000, 20_000) / 9).toBeGreaterThan(0.95 * 2 * MB);
    expect(sum(11_000, 20_000) / 9).toBeLessThan(1.05 * 2 * MB);
    expect(sum(21_000, 30_000) / 9).toBeGreaterThan(0.95 * 40 * MB);
    expect(sum(21_000, 30_000) / 9).toBeLessThan(1.05 * 40 * MB);
  });

  it('lets at most one burst (100 ms of rate) through after an idle period', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const bucket = new TokenBucket(10 * MB);
    const burst = bucket.burst;
    expect(burst).toBe(1 * MB);
    await vi.advanceTimersByTimeAsync(5000); // idle: tokens are capped, not accumulated
    const releases = await simulate(bucket, 4, 16_384, 1);
    const firstInstant = releases.filter(([at]) => at < 1).reduce((n, [, b]) => n + b, 0);
    expect(firstInstant).toBeLessThanOrEqual(burst);
    expect(firstInstant).toBeGreaterThan(burst - 16_384);
    const total = releases.reduce((n, [, b]) => n + b, 0);
    expect(total).toBeLessThanOrEqual(10 * MB + burst);
  });

  it('is unlimited at rate 0 and when switched to 0', async () => {
    const bucket = new TokenBucket(0);
    const t0 = performance.now();
    for (let i = 0; i < 1000; i++) await bucket.take(1 * MB);
    expect(performance.now() - t0).toBeLessThan(500);
    expect(bucket.released).toBe(1000 * MB);
  });
});

describe('TokenBucket with real streams and the real clock', () => {
  /** Pushes `bytes` through `throttled(buckets)` in 64 KiB chunks; resolves with elapsed ms. */
  async function pump(buckets: TokenBucket[], bytes: number, signal?: AbortSignal): Promise<number> {
    const chunk = Buffer.alloc(64 * 1024);
    let left = bytes;
    const source = new Readable({
      read() {
        if (left <= 0) return void this.push(null);
        const n = Math.min(chunk.length, left);
        left -= n;
        this.push(chunk.subarray(0, n));
      },
    });
    const sink = new Writable({ write: (_c, _e, done) => done() });
    const t0 = performance.now();
    await pipeline(source, throttled(buckets, signal), sink);
    return performance.now() - t0;
  }

  it('shares one cap among concurrent streams (2 MB at 1 MB/s through 4 streams)', async () => {
    const bucket = new TokenBucket(1 * MB);
    const t0 = performance.now();
    await Promise.all([pump([bucket], 500_000), pump([bucket], 500_000), pump([bucket], 500_000), pump([bucket], 500_000)]);
    const elapsed = (performance.now() - t0) / 1000;
    // Never faster than the cap allows (2 MB minus the initial burst, at 1 MB/s)...
    expect(elapsed).toBeGreaterThan((2 * MB - bucket.burst) / MB - 0.05);
    // ...and not much slower, even on a busy 2-core machine.
    expect(elapsed).toBeLessThan(4);
    expect(bucket.released).toBe(2 * MB);
  }, 15_000);

  it('holds a stream to the narrower of its rule cap and the process cap', async () => {
    const processBucket = new TokenBucket(10 * MB);
    const rule = new TokenBucket(1 * MB);
    const elapsed = (await pump([rule, processBucket], 1.2 * MB)) / 1000;
    expect(elapsed).toBeGreaterThan((1.2 * MB - rule.burst) / MB - 0.05);
    expect(elapsed).toBeLessThan(3);
    expect(effectiveRate([rule, processBucket, undefined])).toBe(1 * MB);
  }, 15_000);

  it('speeds up in flight when the cap is raised', async () => {
    const bucket = new TokenBucket(256 * 1024);
    setTimeout(() => bucket.setRate(4 * MB), 300);
    const elapsed = await pump([bucket], 2 * MB);
    // At the first rate alone this would take ~8 s.
    expect(elapsed).toBeLessThan(3000);
  }, 15_000);

  it('aborts a waiting stream, and leaves no abort listeners behind', async () => {
    const bucket = new TokenBucket(64 * 1024);
    const controller = new AbortController();
    const run = pump([bucket], 10 * MB, controller.signal);
    setTimeout(() => controller.abort(new Error('stop')), 200);
    await expect(run).rejects.toThrow('stop');

    const calm = new AbortController();
    const fast = new TokenBucket(50 * MB);
    await pump([fast], 5 * MB, calm.signal);
    expect(getEventListeners(calm.signal, 'abort').length).toBe(0);
  }, 15_000);
});

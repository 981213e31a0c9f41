// Bandwidth limiting: one token bucket shared by every stream it governs (the process cap, and one per
// rule inside it), so the cap holds however many blobs are in flight. Waiters are served first come,
// first served; the rate can change at run time (the daemon's API does).
//
// Accuracy: the bucket holds at most `burst` tokens (100 ms of rate, at least 16 KiB), so whatever the
// number of streams, the bytes released in any interval T are at most rate*T + burst. A chunk larger
// than the tokens available is released once the bucket is full and leaves a debt (negative tokens)
// that later chunks pay off, so large chunks never let the average exceed the rate either. Timers
// that fire late (a loaded machine) lose nothing as long as they are less than `burst` late: tokens
// accrue by the clock, not by timer ticks.
import { Transform, type TransformCallback } from 'node:stream';

interface Waiter {
  bytes: number;
  resolve: () => void;
  reject: (e: unknown) => void;
  signal?: AbortSignal | undefined;
  onAbort?: (() => void) | undefined;
}

export class TokenBucket {
  private tokens: number;
  private last = performance.now();
  private readonly waiters: Waiter[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** Bytes released since creation (all callers), for metrics and tests. */
  released = 0;

  /** @param rate bytes per second; 0 = unlimited. Burst is ~100 ms of rate (at least 16 KiB). */
  constructor(private rate: number) {
    this.tokens = this.burst;
  }

  get bytesPerSecond(): number {
    return this.rate;
  }

  /** The most bytes the bucket lets through at once after an idle period. */
  get burst(): number {
    return Math.max(16 * 1024, this.rate / 10);
  }

  /** Streams waiting for tokens right now. */
  get waiting(): number {
    return this.waiters.length;
  }

  /** Changes the rate (bytes/s, 0 = unlimited); waiting streams are rescheduled at the new rate at once. */
  setRate(rate: number): void {
    if (!Number.isFinite(rate) || rate < 0) throw new RangeError(`bandwidth must be a non-negative number of bytes per second, got ${rate}`);
    this.refill();
    this.rate = rate;
    // A debt from the old rate carries over (the bytes were sent); a surplus is capped by the new burst.
    this.tokens = Math.min(this.tokens, this.burst);
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.drain();
  }

  /** Resolves once `bytes` may be sent. Requests larger than the burst are let through as a debt. */
  take(bytes: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.rate <= 0) {
      this.released += bytes;
      return Promise.resolve();
    }
    if (this.waiters.length === 0) {
      this.refill();
      if (this.tokens >= Math.min(bytes, this.burst)) {
        this.tokens -= bytes;
        this.released += bytes;
        return Promise.resolve();
      }
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { bytes, resolve, reject, signal };
      if (signal) {
        // Removed again when the waiter is served: a stream takes thousands of times from one signal.
        waiter.onAbort = () => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(signal.reason);
          if (i === 0) this.reschedule();
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.waiters.push(waiter);
      this.drain();
    });
  }

  private refill(): void {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
  }

  private reschedule(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.drain();
  }

  private drain(): void {
    if (this.timer) return;
    this.refill();
    while (this.waiters.length) {
      const head = this.waiters[0]!;
      if (this.rate > 0) {
        // A chunk larger than the burst goes through once the bucket is full and leaves a debt
        // (negative tokens), which keeps the long-run average exact.
        const need = Math.min(head.bytes, this.burst);
        if (this.tokens < need) {
          const waitMs = ((need - this.tokens) / this.rate) * 1000;
          this.timer = setTimeout(
            () => {
              this.timer = undefined;
              this.drain();
            },
            Math.max(1, Math.ceil(waitMs)),
          );
          return;
        }
        this.tokens -= head.bytes;
      }
      this.waiters.shift();
      if (head.onAbort) head.signal?.removeEventListener('abort', head.onAbort);
      this.released += head.bytes;
      head.resolve();
    }
  }
}

/** The smallest non-zero rate among the buckets (bytes/s), or 0 when none limits. */
export function effectiveRate(buckets: (TokenBucket | undefined)[]): number {
  let rate = 0;
  for (const b of buckets) if (b && b.bytesPerSecond > 0) rate = rate === 0 ? b.bytesPerSecond : Math.min(rate, b.bytesPerSecond);
  return rate;
}

/** Waits on every bucket in order. Pass the narrowest (the rule's) first, so a stream held back by
 * its rule does not sit on tokens of the shared process bucket meanwhile. */
export async function takeAll(buckets: (TokenBucket | undefined)[], bytes: number, signal?: AbortSignal): Promise<void> {
  for (const b of buckets) if (b && b.bytesPerSecond > 0) await b.take(bytes, signal);
}

/** A pass-through stream that waits on every bucket (rule cap, then process cap) before each chunk. */
export function throttled(buckets: (TokenBucket | undefined)[], signal?: AbortSignal): Transform {
  const active = buckets.filter((b): b is TokenBucket => b !== undefined);
  return new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      if (active.every((b) => b.bytesPerSecond <= 0)) {
        done(null, chunk);
        return;
      }
      takeAll(active, chunk.length, signal).then(
        () => done(null, chunk),
        (err: unknown) => done(err as Error),
      );
    },
  });
}

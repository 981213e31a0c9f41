// Bandwidth limiting: one token bucket shared by every stream it governs (the process cap, and one per
// rule inside it), so the cap holds however many blobs are in flight. Waiters are served first come,
// first served; the rate can change at run time (the daemon's API does).
import { Transform, type TransformCallback } from 'node:stream';

export class TokenBucket {
  private tokens: number;
  private last = performance.now();
  private readonly waiters: { bytes: number; resolve: () => void; reject: (e: unknown) => void; signal?: AbortSignal | undefined }[] = [];
  private timer: NodeJS.Timeout | undefined;

  /** @param rate bytes per second; 0 = unlimited. Burst is ~100 ms of rate (at least 16 KiB). */
  constructor(private rate: number) {
    this.tokens = this.burst;
  }

  get bytesPerSecond(): number {
    return this.rate;
  }

  private get burst(): number {
    return Math.max(16 * 1024, this.rate / 10);
  }

  setRate(rate: number): void {
    this.refill();
    this.rate = rate;
    this.tokens = Math.min(this.tokens, this.burst);
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.drain();
  }

  /** Resolves once `bytes` may be sent. Requests larger than the burst are let through as a debt. */
  take(bytes: number, signal?: AbortSignal): Promise<void> {
    if (this.rate <= 0) return Promise.resolve();
    if (this.waiters.length === 0) {
      this.refill();
      if (this.tokens >= Math.min(bytes, this.burst)) {
        this.tokens -= bytes;
        return Promise.resolve();
      }
    }
    return new Promise((resolve, reject) => {
      const waiter = { bytes, resolve, reject, signal };
      this.waiters.push(waiter);
      signal?.addEventListener(
        'abort',
        () => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(signal.reason);
        },
        { once: true },
      );
      this.drain();
    });
  }

  private refill(): void {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
  }

  private drain(): void {
    if (this.timer) return;
    this.refill();
    while (this.waiters.length) {
      if (this.rate <= 0) {
        this.waiters.shift()!.resolve();
        continue;
      }
      const head = this.waiters[0]!;
      // A chunk larger than the burst goes through once the bucket is full and leaves a debt
      // (negative tokens), which keeps the long-run average exact.
      const need = Math.min(head.bytes, this.burst);
      if (this.tokens < need) {
        const waitMs = ((need - this.tokens) / this.rate) * 1000;
        this.timer = setTimeout(() => {
          this.timer = undefined;
          this.drain();
        }, Math.max(1, Math.ceil(waitMs)));
        return;
      }
      this.tokens -= head.bytes;
      this.waiters.shift();
      head.resolve();
    }
  }
}

/** A pass-through stream that waits on every bucket (process cap, rule cap) before each chunk. */
export function throttled(buckets: TokenBucket[], signal?: AbortSignal): Transform {
  const active = buckets.filter(Boolean);
  return new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      if (active.every((b) => b.bytesPerSecond <= 0)) {
        done(null, chunk);
        return;
      }
      void (async () => {
        for (const b of active) await b.take(chunk.length, signal);
      })().then(
        () => done(null, chunk),
        (err: unknown) => done(err as Error),
      );
    },
  });
}

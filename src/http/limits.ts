// Per-registry limits. Requests and blob bytes are different limits (issue 11: a catalog of small
// images is bound by requests in flight, a set of big layers by bandwidth), so there are two:
//   - requests in flight (and a request rate), for everything that is not a blob body: a slot is
//     held until the answer's headers arrive;
//   - a byte budget for blob bodies: a blob GET or upload takes its size from the budget until its
//     body is done, so a few big layers cannot starve each other and many small ones run side by side.
import PQueue from 'p-queue';
import type { HttpRequest, HttpResponse, Layer } from './types.js';

export interface RequestLimits {
  /** Requests started per second (a token bucket refilled every second). */
  requestsPerSecond?: number | undefined;
  /** Requests in flight (blob bodies excluded: they are bound by `bodyBytes`). */
  maxConcurrency?: number | undefined;
  /** Bytes of blob bodies in flight. */
  bodyBytes?: number | undefined;
  /**
   * Cooperating workers on one PostgreSQL state (issue 12) share each registry's limits: this process
   * gets `1 / share.workers` of the request rate and of the requests in flight, re-read as it changes.
   */
  share?: LimitShare | undefined;
}

/**
 * How many live workers share the configured limits (1 without cooperation). The coordinator sets it
 * from the workers' heartbeats; every limiter and bandwidth bucket of the process follows it.
 */
export class LimitShare {
  private count = 1;
  private readonly listeners = new Set<(workers: number) => void>();

  get workers(): number {
    return this.count;
  }

  /** This process's part of a configured figure (at least `min`). */
  part(figure: number, min = 0): number {
    return Math.max(min, figure / this.count);
  }

  set(workers: number): void {
    const n = Math.max(1, Math.floor(workers));
    if (n === this.count) return;
    this.count = n;
    for (const l of this.listeners) l(n);
  }

  onChange(listener: (workers: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

/**
 * Requests started per second, as a sliding one-second window whose cap is re-read for every request
 * (so a share that changes applies at once). Waiters are served in order.
 */
class RequestRate {
  private readonly started: number[] = [];
  private readonly waiting: Array<() => void> = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly cap: () => number) {}

  acquire(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    return new Promise((resolve, reject) => {
      const grant = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        const i = this.waiting.indexOf(grant);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(grant);
      this.pump();
    });
  }

  private pump(): void {
    const now = performance.now();
    while (this.started.length && now - this.started[0]! >= 1000) this.started.shift();
    const cap = Math.max(1, Math.floor(this.cap()));
    while (this.waiting.length && this.started.length < cap) {
      this.started.push(now);
      this.waiting.shift()!();
    }
    if (this.waiting.length && !this.timer) {
      const wait = Math.max(1, 1000 - (now - this.started[0]!));
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.pump();
      }, wait);
      this.timer.unref?.();
    }
  }
}

/**
 * A counting semaphore over bytes. A request larger than the whole budget waits for the budget to be
 * empty and then runs alone (it is never refused). Waiters are served in order.
 */
export class ByteBudget {
  private used = 0;
  private readonly waiting: { bytes: number; grant: () => void }[] = [];

  constructor(readonly capacity: number) {}

  get inUse(): number {
    return this.used;
  }

  /** Resolves with a release function once `bytes` fit; rejects when `signal` aborts first. */
  acquire(bytes: number, signal?: AbortSignal): Promise<() => void> {
    const want = Math.min(Math.max(0, bytes), this.capacity);
    signal?.throwIfAborted();
    return new Promise((resolve, reject) => {
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        this.used -= want;
        this.pump();
      };
      const entry = {
        bytes: want,
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          this.used += want;
          resolve(release);
        },
      };
      const onAbort = () => {
        const i = this.waiting.indexOf(entry);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(signal!.reason);
        this.pump();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(entry);
      this.pump();
    });
  }

  private pump(): void {
    while (this.waiting.length > 0) {
      const head = this.waiting[0]!;
      if (this.used + head.bytes > this.capacity && this.used > 0) return;
      this.waiting.shift();
      head.grant();
    }
  }
}

/**
 * The limits layer. Every request counts against the request rate. A blob body takes `bodyBytes` from
 * the byte budget when one is configured (held until its body ends) instead of a slot among requests
 * in flight; without a budget it takes a slot like any request (so `maxConcurrency` also bounds
 * layer pushes, as SWR's per-tenant limit needs). A slot is held until the answer's headers arrive.
 */
export function limitsLayer(limits: RequestLimits): Layer {
  const { requestsPerSecond, maxConcurrency, bodyBytes, share } = limits;
  const rate = requestsPerSecond ? new RequestRate(() => (share ? share.part(requestsPerSecond, 1) : requestsPerSecond)) : undefined;
  const slotsFor = (n: number) => Math.max(1, Math.floor(share ? share.part(n, 1) : n));
  const slots = maxConcurrency ? new PQueue({ concurrency: slotsFor(maxConcurrency) }) : undefined;
  if (slots && share) share.onChange(() => (slots.concurrency = slotsFor(maxConcurrency!)));
  const budget = bodyBytes && bodyBytes > 0 ? new ByteBudget(bodyBytes) : undefined;
  const rated = async (send: () => Promise<HttpResponse>, req: HttpRequest) => {
    if (rate) await rate.acquire(req.signal);
    return send();
  };
  return (next) => async (req: HttpRequest) => {
    if (req.blobBody && budget) {
      const release = await budget.acquire(req.bodyBytes ?? 0, req.signal);
      try {
        const res = await rated(() => next(req), req);
        // Held until the body is done: read to the end, dumped or destroyed.
        for (const event of ['close', 'end', 'error']) res.body.once(event, release);
        if (res.body.destroyed || res.body.readableEnded) release();
        return res;
      } catch (err) {
        release();
        throw err;
      }
    }
    if (!slots) return rated(() => next(req), req);
    // No `signal` option: p-queue 8 leaves an abort listener (and a promise) on the signal for every
    // task it ever ran, and with the run's own signal that is one per request for the whole run. A
    // request aborted while it waits fails when its turn comes, without sending.
    return slots.add(
      () => {
        req.signal?.throwIfAborted();
        return rated(() => next(req), req);
      },
      { throwOnTimeout: true },
    );
  };
}

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
  const { requestsPerSecond, maxConcurrency, bodyBytes } = limits;
  const rate = requestsPerSecond ? new PQueue({ intervalCap: Math.max(1, Math.floor(requestsPerSecond)), interval: 1000 }) : undefined;
  const slots = maxConcurrency ? new PQueue({ concurrency: maxConcurrency }) : undefined;
  const budget = bodyBytes && bodyBytes > 0 ? new ByteBudget(bodyBytes) : undefined;
  const opts = (req: HttpRequest) => ({ throwOnTimeout: true as const, ...(req.signal ? { signal: req.signal } : {}) });
  const rated = (send: () => Promise<HttpResponse>, req: HttpRequest) => (rate ? rate.add(send, opts(req)) : send());
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
    return slots.add(() => rated(() => next(req), req), opts(req));
  };
}

// Retries: network trouble and 408/429/5xx answers are tried again with exponential back-off and full
// jitter, honouring Retry-After, when the body can be sent again (buffers, strings, body factories).
// A 429/503 sets one back-off for the whole registry, so a throttling storm slows every request to it
// instead of each retrying on its own.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { bufferedBody, readBody } from './body.js';
import { isNetworkError } from './dispatch.js';
import { type HttpRequest, type HttpResponse, type Layer, isReplayable, redactUrl } from './types.js';

export const RETRYABLE_STATUS = new Set([408, 429, 500, 502, 503, 504]);

/** Delay for attempt n (1-based): exponential from `base`, capped at `cap`, with (half) jitter. */
export function backoffMs(attempt: number, base = 500, cap = 30_000): number {
  const ceiling = Math.min(cap, base * 2 ** (attempt - 1));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/** Retry-After as seconds or an HTTP date; undefined when absent or unparseable. Capped at 5 minutes. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return undefined;
  const secs = Number(v);
  if (Number.isFinite(secs) && secs >= 0) return Math.min(secs * 1000, 300_000);
  const date = Date.parse(v);
  if (Number.isFinite(date)) return Math.min(Math.max(0, date - now), 300_000);
  return undefined;
}

/** One back-off shared by every request to a registry: no request starts before `until`. */
export class SharedBackoff {
  until = 0;

  pause(ms: number): void {
    this.until = Math.max(this.until, Date.now() + ms);
  }

  async wait(signal?: AbortSignal): Promise<void> {
    const wait = this.until - Date.now();
    if (wait > 0) await sleep(wait, undefined, { signal });
  }
}

export interface RetryOptions {
  registry: string;
  /** Retries after the first attempt. */
  retries: number;
  /** First back-off delay (ms); doubled per attempt up to 30 s. */
  baseDelayMs: number;
  backoff: SharedBackoff;
  logger?: Logger | undefined;
  onRetry?: ((info: { status?: number; error?: string; attempt: number }) => void) | undefined;
}

/** Largest body read to decide `retryIf`. */
const RETRY_IF_LIMIT = 4 * 1024 * 1024;

export function retryLayer(o: RetryOptions): Layer {
  return (next) => async (req: HttpRequest): Promise<HttpResponse> => {
    // A blob body is never re-sent here, even from a factory: a failed upload session may hold part of
    // it, so the blob copier starts the blob over in a new session (the factory is for re-authentication).
    const replayable = req.blobBody ? isReplayable(req.body) && typeof req.body !== 'function' : isReplayable(req.body);
    const maxAttempts = replayable ? o.retries + 1 : 1;
    for (let attempt = 1; ; attempt++) {
      await o.backoff.wait(req.signal);
      let res: HttpResponse;
      try {
        res = await next({ ...req, attempt });
      } catch (err) {
        if (req.signal?.aborted || !isNetworkError(err) || attempt >= maxAttempts) throw err;
        o.logger?.warn({ registry: o.registry, url: redactUrl(req.url), attempt, err: (err as Error).message }, 'network error, retrying');
        o.onRetry?.({ error: (err as Error).message, attempt });
        await sleep(backoffMs(attempt, o.baseDelayMs), undefined, { signal: req.signal });
        continue;
      }
      let retry = (req.retryStatus ?? RETRYABLE_STATUS).has(res.statusCode);
      if (!retry && req.retryIf) {
        const bytes = await readBody(res, RETRY_IF_LIMIT, { registry: o.registry, repository: req.repository });
        retry = req.retryIf({ statusCode: res.statusCode, text: bytes.toString('utf8') });
        res = { ...res, body: bufferedBody(bytes) };
      }
      const retryAfter = parseRetryAfter(res.headers['retry-after']);
      if (res.statusCode === 429 || res.statusCode === 503) {
        // Throttled: every request to this registry waits, not just this one. A streamed body that
        // cannot be replayed here still makes the caller's next request honour Retry-After.
        if (attempt < maxAttempts || retryAfter !== undefined) o.backoff.pause(retryAfter ?? backoffMs(attempt, o.baseDelayMs));
      }
      if (!retry || attempt >= maxAttempts) return res;
      await res.body.dump().catch(() => undefined);
      const delay = retryAfter ?? backoffMs(attempt, o.baseDelayMs);
      o.logger?.warn({ registry: o.registry, url: redactUrl(req.url), status: res.statusCode, attempt, delayMs: Math.round(delay) }, 'retryable status, retrying');
      o.onRetry?.({ status: res.statusCode, attempt });
      await sleep(delay, undefined, { signal: req.signal });
    }
  };
}

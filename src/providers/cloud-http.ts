// The little HTTP layer shared by the TCR and SWR management clients: one JSON request with a timeout,
// a few retries for throttling / transient failures (each attempt re-signed, since signatures carry a
// timestamp), and a per-key memo so "ensure namespace X" hits the API once per run.
import { setTimeout as sleep } from 'node:timers/promises';
import { request, type Dispatcher } from 'undici';
import { isNetworkError, USER_AGENT } from '../registry/http.js';
import { CloudApiError, NETWORK_ERROR_CODE, type CloudProvider } from './cloud-error.js';

export interface CloudHttpOptions {
  /** undici dispatcher (proxy, custom TLS, tests); default: the global one. */
  dispatcher?: Dispatcher | undefined;
  /** Whole-request timeout in ms (default 30 s). */
  timeoutMs?: number | undefined;
  /** Retries after the first attempt for transient failures (default 2). */
  retries?: number | undefined;
  /** Base delay between retries in ms, doubled each time (default 500). */
  retryDelayMs?: number | undefined;
}

export interface CloudRequest {
  method: 'GET' | 'POST';
  url: URL;
  headers: Record<string, string>;
  body?: string | undefined;
}

export interface CloudResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

const MAX_BODY = 1024 * 1024;

/**
 * Sends `build()` (called again for every attempt, so it can sign with a fresh timestamp) and returns
 * the answer. Network failures and answers for which `retryable` says yes are retried; a network
 * failure that persists becomes a CloudApiError with code NetworkError.
 */
export async function sendCloudRequest(
  provider: CloudProvider,
  action: string,
  build: () => CloudRequest,
  opts: CloudHttpOptions,
  retryable: (res: CloudResponse) => boolean = (res) => res.status === 429 || res.status >= 500,
): Promise<CloudResponse> {
  const retries = opts.retries ?? 2;
  for (let attempt = 0; ; attempt++) {
    const req = build();
    let res: CloudResponse;
    try {
      const answer = await request(req.url, {
        method: req.method,
        headers: { 'user-agent': USER_AGENT, ...req.headers },
        body: req.body ?? null,
        signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000),
        ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}),
      });
      res = { status: answer.statusCode, headers: answer.headers, text: await readBounded(answer.body) };
    } catch (err) {
      const transient = isNetworkError(err) || (err as Error).name === 'TimeoutError' || (err as Error).name === 'AbortError';
      if (transient && attempt < retries) {
        await sleep(delay(opts, attempt));
        continue;
      }
      throw new CloudApiError({ provider, action, code: NETWORK_ERROR_CODE, apiMessage: `cannot reach ${req.url.origin}: ${(err as Error).message}`, cause: err });
    }
    if (attempt < retries && retryable(res)) {
      await sleep(delay(opts, attempt));
      continue;
    }
    return res;
  }
}

function delay(opts: CloudHttpOptions, attempt: number): number {
  return (opts.retryDelayMs ?? 500) * 2 ** attempt;
}

async function readBounded(body: Dispatcher.ResponseData['body']): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buf = Buffer.from(chunk as Uint8Array);
    size += buf.length;
    if (size > MAX_BODY) {
      body.destroy();
      break;
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Memoizes an async operation per key for the life of this object: concurrent callers share one
 * in-flight promise, a success is remembered, a failure is forgotten (the next caller tries again).
 */
export class OncePerKey<T = void> {
  private readonly done = new Map<string, T>();
  private readonly inflight = new Map<string, Promise<T>>();

  run(key: string, fn: () => Promise<T>): Promise<T> {
    if (this.done.has(key)) return Promise.resolve(this.done.get(key) as T);
    const pending = this.inflight.get(key);
    if (pending) return pending;
    const p = fn().then(
      (value) => {
        this.done.set(key, value);
        this.inflight.delete(key);
        return value;
      },
      (err: unknown) => {
        this.inflight.delete(key);
        throw err;
      },
    );
    this.inflight.set(key, p);
    return p;
  }

  /** Forget everything (e.g. the namespace was deleted behind our back). */
  clear(): void {
    this.done.clear();
  }
}

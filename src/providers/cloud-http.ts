// The little layer shared by the TCR and SWR management clients on top of the request layer: one JSON
// request (signed again for every attempt by its Authorizer, since signatures carry a timestamp),
// retried by the transport for throttling and transient failures (also when the vendor answers
// throttling with HTTP 200 and an error code), and a per-key memo so "ensure namespace X" hits the
// API once per run.
import type { Dispatcher } from 'undici';
import { readBodyText } from '../http/body.js';
import { isNetworkError } from '../http/dispatch.js';
import type { RequestCounter, RequestObserver } from '../http/observe.js';
import { Transport } from '../http/transport.js';
import type { Authorizer } from '../http/types.js';
import { UnreachableError } from '../registry/errors.js';
import { CloudApiError, NETWORK_ERROR_CODE, type CloudProvider } from './cloud-error.js';

export interface CloudHttpOptions {
  /** The transport to send with; built from the options below when absent. */
  transport?: Transport | undefined;
  /** undici dispatcher (proxy, custom TLS, tests) when no transport is given; default: the global one. */
  dispatcher?: Dispatcher | undefined;
  /** Whole-request timeout in ms (default 30 s). */
  timeoutMs?: number | undefined;
  /** Retries after the first attempt for transient failures (default 2). */
  retries?: number | undefined;
  /** Base delay between retries in ms, doubled each time (default 500). */
  retryDelayMs?: number | undefined;
  counter?: RequestCounter | undefined;
  /** The registry the API manages: its requests count there (the report's per-registry requests). */
  countAs?: string | undefined;
  observer?: RequestObserver | undefined;
}

export interface CloudRequest {
  method: 'GET' | 'POST';
  url: URL;
  headers?: Record<string, string> | undefined;
  body?: string | undefined;
  /** Signs each attempt (TC3, SDK-HMAC) or adds Basic credentials; bound to its origin. */
  auth?: Authorizer | undefined;
}

export interface CloudResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

const MAX_BODY = 1024 * 1024;

/** A transport for a cloud API endpoint (its own back-off: a throttled API must not pause registry traffic). */
export function cloudTransport(name: string, opts: CloudHttpOptions): Transport {
  return (
    opts.transport ??
    new Transport({
      name,
      dispatcher: opts.dispatcher,
      useGlobalDispatcher: opts.dispatcher === undefined,
      retries: opts.retries ?? 2,
      retryDelayMs: opts.retryDelayMs,
      deadlineMs: opts.timeoutMs ?? 30_000,
      idleTimeoutMs: opts.timeoutMs ?? 30_000,
      counter: opts.counter,
      countAs: opts.countAs,
      observer: opts.observer,
    })
  );
}

/**
 * Sends `req` and returns the answer, read whole (bounded). 429, 5xx and answers for which
 * `retryable` says yes are retried by the transport; a network failure that persists becomes a
 * CloudApiError with code NetworkError.
 */
export async function sendCloudRequest(
  transport: Transport,
  provider: CloudProvider,
  action: string,
  req: CloudRequest,
  retryable?: (res: CloudResponse) => boolean,
): Promise<CloudResponse> {
  try {
    const res = await transport.send({
      method: req.method,
      url: req.url,
      headers: req.headers,
      body: req.body ?? null,
      auth: req.auth,
      kind: 'api',
      ...(retryable ? { retryIf: (r: { statusCode: number; text: string }) => retryable({ status: r.statusCode, headers: {}, text: r.text }) } : {}),
    });
    return { status: res.statusCode, headers: res.headers, text: await readBodyText(res, MAX_BODY, { registry: transport.name, what: `${provider} ${action} answer` }) };
  } catch (err) {
    if (err instanceof UnreachableError || isNetworkError(err)) {
      throw new CloudApiError({ provider, action, code: NETWORK_ERROR_CODE, apiMessage: `cannot reach ${req.url.origin}: ${(err as Error).message}`, cause: err });
    }
    throw err;
  }
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

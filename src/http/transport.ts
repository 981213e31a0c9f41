// The request layer: one Transport per registry (or API endpoint), composed of small layers, outermost
// first:
//   redirects  → follows GET/HEAD redirects; credentials stay bound to their origin   (redirects.ts)
//   retry      → back-off + jitter + Retry-After, one shared back-off per registry    (retry.ts)
//   auth       → the request's Authorizer, for its own origin only; 401 → refresh     (auth.ts)
//   limits     → request rate, requests in flight, byte budget for blob bodies       (limits.ts)
//   dispatch   → the undici dispatcher, idle timeouts, total deadline, counts       (dispatch.ts)
// Every HTTP call of Ferry goes through a Transport: the registry client, Harbor's API, the TCR and
// SWR APIs and ChartMuseum downloads. Nothing else under src/ sends requests with undici.
import type { Logger } from 'pino';
import { type Dispatcher, getGlobalDispatcher } from 'undici';
import { authLayer } from './auth.js';
import { createAgent, dispatchLayer } from './dispatch.js';
import { type RequestLimits, limitsLayer } from './limits.js';
import { RequestCounter, type RequestObserver } from './observe.js';
import { redirectLayer } from './redirects.js';
import { SharedBackoff, retryLayer } from './retry.js';
import type { HttpRequest, HttpResponse, Send } from './types.js';

export interface TransportOptions {
  /** Registry (config name) or API, for errors, logs and request counts. */
  name: string;
  /** undici dispatcher (tests: MockAgent). Default: a keep-alive Agent with the TLS settings below, closed by close(). */
  dispatcher?: Dispatcher | undefined;
  /** Use undici's global dispatcher instead of an own Agent (product APIs on public endpoints, with default TLS). */
  useGlobalDispatcher?: boolean | undefined;
  insecure?: boolean | undefined;
  caFile?: string | undefined;
  /** Connections per origin of the default Agent. */
  connections?: number | undefined;
  /** Retries after the first attempt for retryable failures (default 5). */
  retries?: number | undefined;
  /** First retry delay in ms (default 500). */
  retryDelayMs?: number | undefined;
  /** Idle timeout for headers and between body chunks, in ms (default 120 s). */
  idleTimeoutMs?: number | undefined;
  /** Total deadline of a request that is not a blob body, body included, in ms (default: idleTimeoutMs). */
  deadlineMs?: number | undefined;
  limits?: RequestLimits | undefined;
  logger?: Logger | undefined;
  /** Called for every retry, for metrics. */
  onRetry?: ((info: { status?: number; error?: string; attempt: number }) => void) | undefined;
  /** Called once per request sent (every attempt and redirect hop). */
  observer?: RequestObserver | undefined;
  /** Shared by the transports of a run, so one place knows every registry's request count. */
  counter?: RequestCounter | undefined;
  /** Count requests under this registry name instead of `name` (a cloud API counts as the registry it manages). */
  countAs?: string | undefined;
}

export class Transport {
  readonly name: string;
  readonly counter: RequestCounter;
  readonly logger: Logger | undefined;
  readonly backoff = new SharedBackoff();
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private readonly stack: Send;

  constructor(opts: TransportOptions) {
    this.name = opts.name;
    this.logger = opts.logger;
    this.counter = opts.counter ?? new RequestCounter();
    this.ownsDispatcher = opts.dispatcher === undefined && !opts.useGlobalDispatcher;
    this.dispatcher = opts.dispatcher ?? (opts.useGlobalDispatcher ? getGlobalDispatcher() : createAgent(opts));
    const idleTimeoutMs = opts.idleTimeoutMs ?? 120_000;
    const base = dispatchLayer({
      registry: opts.name,
      dispatcher: this.dispatcher,
      idleTimeoutMs,
      deadlineMs: opts.deadlineMs ?? idleTimeoutMs,
      counter: this.counter,
      countAs: opts.countAs,
      observer: opts.observer,
    });
    const layers = [
      redirectLayer(opts.name),
      retryLayer({ registry: opts.name, retries: opts.retries ?? 5, baseDelayMs: opts.retryDelayMs ?? 500, backoff: this.backoff, logger: opts.logger, onRetry: opts.onRetry }),
      authLayer(),
      limitsLayer(opts.limits ?? {}),
    ];
    this.stack = layers.reduceRight<Send>((next, layer) => layer(next), base);
  }

  /**
   * Sends a request through every layer. Non-success statuses are returned, not thrown: callers map
   * them to typed errors. The response body must be consumed, dumped or destroyed by the caller.
   */
  send(req: HttpRequest): Promise<HttpResponse> {
    return this.stack(req);
  }

  /** Requests this transport's counter has seen, by registry and "kind METHOD". */
  requestCounts(): Record<string, Record<string, number>> {
    return this.counter.counts();
  }

  async close(): Promise<void> {
    if (this.ownsDispatcher) await this.dispatcher.close().catch(() => undefined);
  }
}

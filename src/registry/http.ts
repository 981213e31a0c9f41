// One HTTP transport per registry: a keep-alive undici Agent (pools per origin, so object-storage
// redirect targets get their own pool), retries with exponential backoff + jitter, Retry-After,
// a per-registry request rate / concurrency limit, and one shared back-off per registry so that a
// 429/503 storm slows every request to that registry instead of each retrying on its own.
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import PQueue from 'p-queue';
import { Agent, errors as undiciErrors, type Dispatcher } from 'undici';
import type { Logger } from 'pino';
import { RegistryError, UnreachableError } from './errors.js';

export interface HttpOptions {
  /** Registry name from the config, for errors and logs. */
  registry: string;
  insecure?: boolean | undefined;
  caFile?: string | undefined;
  /** Retries after the first attempt for retryable failures. */
  retries?: number | undefined;
  /** Idle timeout for headers and between body chunks, in ms. */
  requestTimeoutMs?: number | undefined;
  limits?: { requestsPerSecond?: number | undefined; maxConcurrency?: number | undefined } | undefined;
  /** Connections per origin. */
  connections?: number | undefined;
  logger?: Logger | undefined;
  /** Called for every retry, for metrics. */
  onRetry?: ((info: { status?: number; error?: string; attempt: number }) => void) | undefined;
}

export interface HttpRequest {
  method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';
  url: URL;
  headers?: Record<string, string>;
  /** A stream body cannot be replayed: such requests are sent once, the caller retries the whole operation. */
  body?: Buffer | string | Readable | null;
  repository?: string | undefined;
  signal?: AbortSignal | undefined;
}

export type HttpResponse = Dispatcher.ResponseData;

export const USER_AGENT = `ferry/0.1 (node ${process.versions.node})`;

const RETRYABLE_STATUS = new Set([408, 429, 500, 502, 503, 504]);
const NETWORK_ERROR_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
]);

/** True for failures where the same request may succeed later (network trouble, not a protocol answer). */
export function isNetworkError(err: unknown): boolean {
  const e = err as { code?: string; cause?: { code?: string } } | undefined;
  return !!e && (NETWORK_ERROR_CODES.has(e.code ?? '') || NETWORK_ERROR_CODES.has(e.cause?.code ?? '') || err instanceof undiciErrors.SocketError);
}

/** Delay for attempt n (1-based): exponential from 500 ms, capped at 30 s, with full jitter. */
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

export function headerValue(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

export class HttpTransport {
  readonly registry: string;
  private readonly agent: Agent;
  private readonly retries: number;
  private readonly limiter: PQueue | undefined;
  private readonly logger: Logger | undefined;
  private readonly onRetry: HttpOptions['onRetry'];
  /** Shared back-off: no request to this registry starts before this time. */
  private pausedUntil = 0;

  constructor(opts: HttpOptions) {
    this.registry = opts.registry;
    this.retries = opts.retries ?? 5;
    this.logger = opts.logger;
    this.onRetry = opts.onRetry;
    const timeout = opts.requestTimeoutMs ?? 120_000;
    const ca = trustedCertificates(opts.caFile);
    this.agent = new Agent({
      connections: opts.connections ?? 32,
      keepAliveTimeout: 30_000,
      headersTimeout: timeout,
      bodyTimeout: timeout,
      connect: { rejectUnauthorized: !opts.insecure, ...(ca ? { ca } : {}) },
    });
    const { requestsPerSecond, maxConcurrency } = opts.limits ?? {};
    if (requestsPerSecond || maxConcurrency) {
      this.limiter = new PQueue({
        concurrency: maxConcurrency ?? Infinity,
        ...(requestsPerSecond ? { intervalCap: Math.max(1, Math.floor(requestsPerSecond)), interval: 1000 } : {}),
      });
    }
  }

  /**
   * Sends a request, retrying network errors, 408/429/5xx (honouring Retry-After) when the body can
   * be replayed. Non-retryable statuses are returned, not thrown: callers map them to typed errors.
   * The response body must be consumed or dumped by the caller.
   */
  async send(req: HttpRequest): Promise<HttpResponse> {
    const replayable = req.body === undefined || req.body === null || typeof req.body === 'string' || Buffer.isBuffer(req.body);
    const maxAttempts = replayable ? this.retries + 1 : 1;
    for (let attempt = 1; ; attempt++) {
      await this.waitForBackoff(req.signal);
      let res: HttpResponse;
      try {
        res = await this.dispatch(req);
      } catch (err) {
        if (req.signal?.aborted) throw err;
        if (isNetworkError(err) && attempt < maxAttempts) {
          const delay = backoffMs(attempt);
          this.logger?.warn({ registry: this.registry, url: redactUrl(req.url), attempt, err: (err as Error).message }, 'network error, retrying');
          this.onRetry?.({ error: (err as Error).message, attempt });
          await sleep(delay, undefined, { signal: req.signal });
          continue;
        }
        if (isNetworkError(err) || (err as { code?: string }).code?.startsWith('UND_ERR') || (err as { code?: string }).code?.startsWith('ERR_TLS') || /certificate/i.test((err as Error).message)) {
          throw new UnreachableError(`cannot reach ${req.url.origin}: ${(err as Error).message}`, {
            registry: this.registry,
            repository: req.repository,
            method: req.method,
            cause: err,
          });
        }
        throw err;
      }
      if (RETRYABLE_STATUS.has(res.statusCode) && attempt < maxAttempts) {
        const retryAfter = parseRetryAfter(res.headers['retry-after']);
        await res.body.dump().catch(() => undefined);
        const delay = retryAfter ?? backoffMs(attempt);
        if (res.statusCode === 429 || res.statusCode === 503) {
          // Throttled: every request to this registry waits, not just this one.
          this.pausedUntil = Math.max(this.pausedUntil, Date.now() + delay);
        }
        this.logger?.warn({ registry: this.registry, url: redactUrl(req.url), status: res.statusCode, attempt, delayMs: Math.round(delay) }, 'retryable status, retrying');
        this.onRetry?.({ status: res.statusCode, attempt });
        await sleep(delay, undefined, { signal: req.signal });
        continue;
      }
      if ((res.statusCode === 429 || res.statusCode === 503) && !replayable) {
        // A streamed body cannot be replayed here: the caller retries the whole blob, and its next
        // request to this registry still honours Retry-After.
        const retryAfter = parseRetryAfter(res.headers['retry-after']);
        if (retryAfter !== undefined) this.pausedUntil = Math.max(this.pausedUntil, Date.now() + retryAfter);
      }
      return res;
    }
  }

  private async waitForBackoff(signal: AbortSignal | undefined): Promise<void> {
    const wait = this.pausedUntil - Date.now();
    if (wait > 0) await sleep(wait, undefined, { signal });
  }

  private dispatch(req: HttpRequest): Promise<HttpResponse> {
    const run = () =>
      this.agent.request({
        origin: req.url.origin,
        path: req.url.pathname + req.url.search,
        method: req.method,
        headers: { 'user-agent': USER_AGENT, ...req.headers },
        body: req.body ?? null,
        signal: req.signal ?? null,
      });
    return this.limiter ? (this.limiter.add(run, { throwOnTimeout: true }) as Promise<HttpResponse>) : run();
  }

  async close(): Promise<void> {
    await this.agent.close().catch(() => undefined);
  }
}

/**
 * Node's public roots plus the registry's own CA: `ca` replaces the default list, and a registry with a
 * private CA may still redirect blob downloads to object storage with a public certificate.
 */
export function trustedCertificates(caFile: string | undefined): (string | Buffer)[] | undefined {
  return caFile ? [...rootCertificates, readFileSync(caFile)] : undefined;
}

/** The URL without query parameters that may carry upload state or credentials, for logs. */
export function redactUrl(url: URL): string {
  return `${url.origin}${url.pathname}${url.search ? '?…' : ''}`;
}

/** Reads a whole (small) response body as text, bounded to `limit` bytes. */
export async function readText(res: HttpResponse, limit = 4 * 1024 * 1024): Promise<string> {
  const bytes = await readBytes(res, limit);
  if (!bytes) throw new RegistryError(`response body larger than ${limit} bytes`, { registry: 'unknown' });
  return bytes.toString('utf8');
}

/** Reads a whole response body, or undefined (body discarded) when it exceeds `limit` bytes. */
export async function readBytes(res: HttpResponse, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of res.body) {
    total += (chunk as Buffer).length;
    if (total > limit) {
      res.body.destroy();
      return undefined;
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

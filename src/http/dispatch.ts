// The innermost layer: hands one attempt to an undici dispatcher (injected, so unit tests use
// MockAgent; otherwise a keep-alive Agent with the registry's TLS settings, pooled per origin so
// object-storage redirect targets get their own pool). Idle timeouts (headers, and between body
// chunks) apply to every request; a total deadline to every request that is not a blob body.
// Counts and reports every attempt.
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { Agent, errors as undiciErrors, type Dispatcher } from 'undici';
import { UnreachableError } from '../registry/errors.js';
import { bodyForAttempt } from './body.js';
import { deadline as requestDeadline } from './deadline.js';
import type { RequestCounter, RequestObserver } from './observe.js';
import { type HttpRequest, type HttpResponse, type Send, redactUrl } from './types.js';

export const USER_AGENT = `ferry/0.1 (node ${process.versions.node})`;

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
  if (err instanceof NetworkError) return err.transient;
  const e = err as { code?: string; cause?: { code?: string } } | undefined;
  return !!e && (NETWORK_ERROR_CODES.has(e.code ?? '') || NETWORK_ERROR_CODES.has(e.cause?.code ?? '') || err instanceof undiciErrors.SocketError);
}

/** A registry that could not be reached; `transient` when trying again may help (reset, timeout, refused). */
export class NetworkError extends UnreachableError {
  override name = 'UnreachableError';
  transient = false;
}

export interface DispatchOptions {
  registry: string;
  dispatcher: Dispatcher;
  /** Idle timeout for the answer's headers and between body chunks (ms). */
  idleTimeoutMs: number;
  /** Whole-request deadline for requests that are not blob bodies, body included (ms). */
  deadlineMs: number;
  counter: RequestCounter;
  /** The name requests are counted under when not `registry` (a cloud API counts as the registry it manages). */
  countAs?: string | undefined;
  observer?: RequestObserver | undefined;
}

export function dispatchLayer(o: DispatchOptions): Send {
  return async (req: HttpRequest): Promise<HttpResponse> => {
    const started = performance.now();
    const kind = req.kind ?? 'other';
    const attempt = req.attempt ?? 1;
    o.counter.add(o.countAs ?? o.registry, `${kind} ${req.method}`);
    const deadline = req.blobBody ? undefined : requestDeadline(o.deadlineMs, req.signal);
    const signal = deadline?.signal ?? req.signal;
    const report = (status: number | undefined, error: string | undefined) =>
      o.observer?.({ registry: o.registry, method: req.method, url: redactUrl(req.url), kind, status, error, durationMs: Math.round(performance.now() - started), attempt });
    try {
      const res = await o.dispatcher.request({
        origin: req.url.origin,
        path: req.url.pathname + req.url.search,
        method: req.method,
        headers: { 'user-agent': USER_AGENT, ...req.headers },
        body: (await bodyForAttempt(req.body)) ?? null,
        signal: signal ?? null,
        headersTimeout: o.idleTimeoutMs,
        bodyTimeout: o.idleTimeoutMs,
        // undici closes the connection after every HEAD (in case a server sends a body anyway) unless
        // told otherwise: against distribution and Harbor (Go's net/http never writes a HEAD body)
        // that made each manifest or blob HEAD a new TCP (and TLS) connection, a round trip or three
        // per tag of a rerun over a WAN. Registries answer HEAD by the spec; keep the connection.
        ...(req.method === 'HEAD' ? { reset: false } : {}),
      });
      report(res.statusCode, undefined);
      // The deadline covers the body too: it ends when the caller has read or dropped it.
      if (deadline) {
        if (res.body.destroyed || res.body.readableEnded) deadline.clear();
        else res.body.once('close', deadline.clear);
      }
      return { statusCode: res.statusCode, headers: res.headers, body: res.body, url: req.url };
    } catch (err) {
      deadline?.clear();
      report(undefined, (err as Error).message);
      if (req.signal?.aborted) throw err;
      if (deadline?.expired) {
        const e = new NetworkError(`no complete answer from ${req.url.origin} within ${Math.round(o.deadlineMs / 1000)} s`, {
          registry: o.registry,
          repository: req.repository,
          method: req.method,
          cause: err,
        });
        e.transient = true;
        throw e;
      }
      const code = (err as { code?: string }).code ?? '';
      const transient = isNetworkError(err);
      if (transient || code.startsWith('UND_ERR') || code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') || code === 'EPROTO' || /certificate/i.test((err as Error).message)) {
        const e = new NetworkError(`cannot reach ${req.url.origin}: ${(err as Error).message}${connectionHint(err, req.url)}`, { registry: o.registry, repository: req.repository, method: req.method, cause: err });
        e.transient = transient;
        throw e;
      }
      throw err;
    }
  };
}

/**
 * What a raw connection error usually means, for the mistakes people make most: https:// to a registry
 * that speaks plain HTTP (OpenSSL's "wrong version number"), an untrusted certificate, a DNS typo.
 */
export function connectionHint(err: unknown, url: URL): string {
  const text = `${(err as Error)?.message ?? ''} ${(err as { cause?: Error })?.cause?.message ?? ''} ${(err as { code?: string })?.code ?? ''}`;
  if (url.protocol === 'https:' && /wrong version number|packet length too long|unknown protocol|EPROTO|ERR_SSL_WRONG_VERSION/i.test(text)) {
    return ` (the registry seems to speak plain HTTP: use http://${url.host} as its url)`;
  }
  if (/self[- ]signed|unable to (get local issuer|verify the first)|UNABLE_TO_VERIFY_LEAF_SIGNATURE|DEPTH_ZERO_SELF_SIGNED/i.test(text)) {
    return ' (the certificate is not trusted: set caFile to its CA certificate, or insecure: true to skip verification)';
  }
  if (/ENOTFOUND|EAI_AGAIN/.test(text)) return ` (no DNS name ${url.hostname}: check the url)`;
  return '';
}

export interface AgentOptions {
  insecure?: boolean | undefined;
  caFile?: string | undefined;
  /** Connections per origin. */
  connections?: number | undefined;
}

/** A keep-alive Agent with the registry's TLS settings. */
export function createAgent(o: AgentOptions): Agent {
  const ca = trustedCertificates(o.caFile);
  return new Agent({
    connections: o.connections ?? 32,
    keepAliveTimeout: 30_000,
    connect: { rejectUnauthorized: !o.insecure, ...(ca ? { ca } : {}) },
  });
}

/**
 * Node's public roots plus the registry's own CA: `ca` replaces the default list, and a registry with a
 * private CA may still redirect blob downloads to object storage with a public certificate.
 */
export function trustedCertificates(caFile: string | undefined): (string | Buffer)[] | undefined {
  return caFile ? [...rootCertificates, readFileSync(caFile)] : undefined;
}

// The shapes every layer of the request layer shares: one request, one response, and the function
// type a layer wraps (`Send`). A layer is `(next: Send) => Send`, the shape of go-containerregistry's
// RoundTripper wrappers and of undici's interceptors.
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';

export type HttpMethod = 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';

/**
 * A request body. Buffers and strings can be sent again; a Readable can be sent once (a retry or a
 * re-authentication then fails to the caller); a factory (regclient's BodyFunc) is called for every
 * attempt and so makes a streamed upload replayable.
 */
export type BodySource = Buffer | string | Readable | BodyFactory | null;
export type BodyFactory = () => Promise<Readable | Buffer> | Readable | Buffer;

/** What a request is for, counted per registry ("manifest HEAD", "blob PUT", ...). */
export type RequestKind = 'ping' | 'catalog' | 'tags' | 'manifest' | 'blob' | 'upload' | 'referrers' | 'token' | 'api' | 'chart' | 'other';

/**
 * Credentials for one origin. The auth layer asks for headers only for requests to `origin`, never
 * for any other (a redirect, a Link or an upload Location elsewhere gets no credentials).
 */
export interface Authorizer {
  /** The origin (scheme://host:port) these credentials belong to. */
  readonly origin: string;
  /** Headers to add to one attempt of `req` (called again for every attempt: tokens and signatures stay fresh). */
  authorize(req: HttpRequest): Promise<Record<string, string> | undefined>;
  /**
   * A 401 from `origin`. Resolves true when the request should be sent once more with fresh headers
   * (first challenge, or a refused cached token that has now been dropped).
   */
  onUnauthorized?(res: HttpResponse, req: HttpRequest, sent: Record<string, string> | undefined): Promise<boolean>;
}

export interface HttpRequest {
  method: HttpMethod;
  url: URL;
  headers?: Record<string, string> | undefined;
  body?: BodySource | undefined;
  /** Repository, for errors. */
  repository?: string | undefined;
  signal?: AbortSignal | undefined;
  kind?: RequestKind | undefined;
  /** Credentials, sent only to `auth.origin`. */
  auth?: Authorizer | undefined;
  /**
   * A blob body (a blob GET or an upload's PUT/PATCH): no total deadline (the blob copier has its own,
   * sized by the blob), idle timeouts still apply; it takes `bodyBytes` from the byte budget for blob
   * bodies instead of a slot among requests in flight.
   */
  blobBody?: boolean | undefined;
  /** Bytes this blob body will move (the blob or chunk size), for the byte budget. */
  bodyBytes?: number | undefined;
  /** Follow redirects (default: GET and HEAD do). */
  followRedirects?: boolean | undefined;
  /**
   * Also retry answers for which this says yes (the cloud APIs answer throttling with HTTP 200 and an
   * error code in the body). The body is then read (bounded) and handed on as a buffered body.
   */
  /** Statuses retried for this request (default RETRYABLE_STATUS: 408, 429, 500, 502, 503, 504). */
  retryStatus?: ReadonlySet<number> | undefined;
  /** Set by the retry layer: 1 for the first attempt. */
  attempt?: number | undefined;
  retryIf?: ((res: { statusCode: number; text: string }) => boolean) | undefined;
}

export interface HttpResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  /** undici's body: consume it (read, `dump()` or `destroy()`), always. */
  body: Dispatcher.ResponseData['body'];
  /** The URL that answered (after redirects). */
  url: URL;
}

export type Send = (req: HttpRequest) => Promise<HttpResponse>;
export type Layer = (next: Send) => Send;

export function headerValue(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** The URL without query parameters that may carry upload state or credentials, for logs and errors. */
export function redactUrl(url: URL): string {
  return `${url.origin}${url.pathname}${url.search ? '?…' : ''}`;
}

/** Whether a body can be sent again as it is (buffers, strings, factories) or only once (a stream). */
export function isReplayable(body: BodySource | undefined): boolean {
  return body === undefined || body === null || typeof body === 'string' || Buffer.isBuffer(body) || typeof body === 'function';
}

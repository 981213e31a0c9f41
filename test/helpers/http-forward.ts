// The forwarding core of the HTTP test fronts (fault-proxy.ts, redirecting-registry.ts): streams one
// request to the target registry and its answer back, with byte-level faults on the way (cut a body
// part-way, flip a byte). It rewrites Host (the registry builds absolute Location URLs from it, so they
// would come back pointing at the front anyway) and any absolute Location/Link that still names the
// target, so clients keep talking through the front.
import { type Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { sendJson } from './token-issuer.js';

export interface ProxiedRequest {
  method: string;
  /** Path with query, as received. */
  path: string;
  headers: IncomingHttpHeaders;
  /** Status sent to the client (undefined while in flight or when the connection was cut). */
  status?: number;
  /** Which fault, if any, was applied. */
  fault?: 'status' | 'reset' | 'flip' | 'stall';
}

export const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'upgrade']);
export const BLOB_GET = /^\/v2\/.+\/blobs\/[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+(?:\?.*)?$/;
export const UPLOAD = /^\/v2\/.+\/blobs\/uploads\//;

export interface ForwardOptions {
  target: URL;
  agent: HttpAgent;
  /** The proxy's own origin, for rewriting Location/Link. */
  self: string;
  /** Overrides the upstream path (default: the request's). */
  path?: string;
  /** Overrides the method sent upstream. */
  method?: string;
  /** Extra/replacement request headers (null deletes). */
  setHeaders?: Record<string, string | null>;
  onUpBytes?: (n: number) => void;
  onDownBytes?: (n: number) => void;
  uploadCutAfter?: number | undefined;
  onUploadCut?: () => void;
  downloadCutAfter?: number | undefined;
  onDownloadCut?: () => void;
  flip?: boolean;
  onFlip?: () => void;
  onStatus?: (status: number) => void;
  /** Called with the upstream response first; returning true means the caller answered. */
  intercept?: (upstream: IncomingMessage) => boolean;
  /** The client's body was already consumed (a second forward of the same request): send none. */
  bodyless?: boolean;
  /** Headers added to (or replacing those of) the upstream answer. */
  responseHeaders?: Record<string, string> | undefined;
}

/** Streams one request to the target and its answer back, applying byte-level faults on the way. */
export function forwardRequest(req: IncomingMessage, res: ServerResponse, o: ForwardOptions): void {
  const headers: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) headers[k] = v;
  headers.host = o.target.host;
  for (const [k, v] of Object.entries(o.setHeaders ?? {})) {
    if (v === null) delete headers[k];
    else headers[k] = v;
  }

  const upstreamReq = httpRequest({
    protocol: o.target.protocol,
    hostname: o.target.hostname,
    port: o.target.port,
    method: o.method ?? req.method,
    path: o.path ?? req.url,
    headers,
    agent: o.agent,
  });

  const cutClient = (): void => {
    // destroy() after the write callback: the bytes before the cut reach the peer, then the
    // connection ends mid-message (the client sees a premature close / socket error).
    req.socket.destroy();
    upstreamReq.destroy();
  };

  upstreamReq.on('error', () => {
    if (!res.headersSent) {
      if (!res.destroyed && !req.socket.destroyed) sendJson(res, 502, { errors: [{ code: 'UNAVAILABLE', message: 'test proxy: upstream error' }] });
    } else {
      res.destroy();
    }
  });

  upstreamReq.on('response', (upstream) => {
    const status = upstream.statusCode ?? 502;
    o.onStatus?.(status);
    if (o.intercept?.(upstream)) return;
    const outHeaders: OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(upstream.headers)) {
      if (HOP_BY_HOP.has(k) || v === undefined) continue;
      outHeaders[k] = k === 'location' || k === 'link' ? rewriteOrigin(v, o.target.origin, o.self) : v;
    }
    for (const [k, v] of Object.entries(o.responseHeaders ?? {})) outHeaders[k.toLowerCase()] = v;
    res.writeHead(status, outHeaders);
    const bodyFaults = status === 200 || status === 206;
    // A cut at or beyond the end of the body would not cut anything: leave such responses alone
    // (and do not count them as resets).
    const length = Number(upstream.headers['content-length']);
    let cutAfter = bodyFaults && !(Number.isFinite(length) && (o.downloadCutAfter ?? 0) >= length) ? o.downloadCutAfter : undefined;
    let flip = bodyFaults && o.flip === true;
    let sent = 0;
    if (cutAfter !== undefined && cutAfter <= 0) {
      o.onDownloadCut?.();
      res.flushHeaders();
      setImmediate(cutClient);
      upstream.destroy();
      return;
    }
    upstream.on('data', (chunk: Buffer) => {
      if (flip && chunk.length > 0) {
        chunk = Buffer.from(chunk); // never mutate a buffer we do not own
        chunk[0] = (chunk[0] ?? 0) ^ 0xff;
        flip = false;
        o.onFlip?.();
      }
      if (cutAfter !== undefined && sent + chunk.length >= cutAfter) {
        const part = chunk.subarray(0, cutAfter - sent);
        sent += part.length;
        o.onDownBytes?.(part.length);
        cutAfter = undefined;
        o.onDownloadCut?.();
        upstream.destroy();
        res.write(part, () => cutClient());
        return;
      }
      sent += chunk.length;
      o.onDownBytes?.(chunk.length);
      if (!res.write(chunk)) upstream.pause();
    });
    res.on('drain', () => upstream.resume());
    upstream.on('end', () => res.end());
    upstream.on('error', () => res.destroy());
  });

  // Request body: counted, possibly cut.
  if (o.bodyless) {
    upstreamReq.end();
    return;
  }
  let up = 0;
  let cutUpAfter = o.uploadCutAfter;
  let cut = false;
  if (cutUpAfter !== undefined && cutUpAfter <= 0) {
    o.onUploadCut?.();
    cutClient();
    return;
  }
  req.on('data', (chunk: Buffer) => {
    if (cut) return;
    if (cutUpAfter !== undefined && up + chunk.length >= cutUpAfter) {
      const part = chunk.subarray(0, cutUpAfter - up);
      up += part.length;
      o.onUpBytes?.(part.length);
      cutUpAfter = undefined;
      cut = true;
      o.onUploadCut?.();
      req.pause();
      // Let the registry receive the partial body, then drop both sides.
      upstreamReq.write(part, () => setTimeout(cutClient, 20));
      return;
    }
    up += chunk.length;
    o.onUpBytes?.(chunk.length);
    if (!upstreamReq.write(chunk)) req.pause();
  });
  upstreamReq.on('drain', () => {
    if (!cut) req.resume();
  });
  req.on('end', () => {
    if (!cut) upstreamReq.end();
  });
  req.on('error', () => upstreamReq.destroy());
  res.on('close', () => {
    if (!res.writableFinished) upstreamReq.destroy();
  });
}

export function rewriteOrigin(value: string | string[] | number, from: string, to: string): string | string[] {
  const one = (s: string): string => s.split(from).join(to);
  if (Array.isArray(value)) return value.map(one);
  return one(String(value));
}

// The HTTP plumbing (node:http, no framework): routing, request bodies with a size cap, JSON answers,
// access checks and error handling. A handler that throws answers 500 and is logged; it never takes
// the process down.
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { Logger } from '../log.js';
import { hasToken } from './auth.js';
import { isLoopback } from './settings.js';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string | string[]> = {},
  ) {
    super(message);
  }
}

/**
 * token: the API token when one is configured; without one, only requests addressed to a loopback
 * name (Host header) pass, which keeps other web pages' scripts (DNS rebinding) out.
 * open: anyone (health probes). custom: the handler checks (the webhook).
 */
export type Access = 'token' | 'open' | 'custom';

export interface RouteContext {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  params: string[];
}

export interface Route {
  method: 'GET' | 'POST' | 'PUT';
  path: RegExp;
  access: Access;
  handler: (ctx: RouteContext) => Promise<void> | void;
}

export interface ServerOptions {
  routes: Route[];
  /** Current API token (changes on reload). */
  token: () => string | undefined;
  logger: Logger;
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string | string[]> = {}): void {
  const text = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function sendText(res: ServerResponse, status: number, contentType: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

/** Reads the request body, refusing more than `limit` bytes (413). */
export async function readBody(req: IncomingMessage, limit = 1024 * 1024): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) throw new HttpError(413, `request body over ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new HttpError(413, `request body over ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Reads and parses a JSON body; 400 when it is not JSON. An empty body is `undefined`. */
export async function readJson(req: IncomingMessage, limit?: number): Promise<unknown> {
  const body = await readBody(req, limit);
  if (!body.length) return undefined;
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch {
    throw new HttpError(400, 'request body is not valid JSON');
  }
}

function decodeParam(p: string): string {
  try {
    return decodeURIComponent(p);
  } catch {
    throw new HttpError(400, 'malformed percent-encoding in the path');
  }
}

function hostname(hostHeader: string | undefined): string | undefined {
  if (!hostHeader) return undefined;
  try {
    return new URL(`http://${hostHeader}`).hostname.replace(/^\[(.*)\]$/, '$1');
  } catch {
    return undefined;
  }
}

/** Without a token: only requests that name the daemon by a loopback address. */
export function addressedToLoopback(req: IncomingMessage): boolean {
  const h = hostname(req.headers.host);
  return h !== undefined && isLoopback(h);
}

/** A browser sends Origin on cross-site writes; a different origin than the Host it addressed is refused. */
function crossSite(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (!origin || req.method === 'GET' || req.method === 'HEAD') return false;
  try {
    return new URL(origin).host !== req.headers.host;
  } catch {
    return true;
  }
}

export function checkAccess(req: IncomingMessage, access: Access, token: string | undefined): void {
  if (access === 'open') return;
  if (crossSite(req)) throw new HttpError(403, 'cross-site request refused');
  if (access === 'custom') return;
  if (token) {
    if (!hasToken(req, token)) {
      throw new HttpError(401, 'missing or wrong API token (Authorization: Bearer <daemon.token>)', { 'www-authenticate': ['Bearer realm="ferry"', 'Basic realm="ferry", charset="UTF-8"'] });
    }
    return;
  }
  if (!addressedToLoopback(req)) throw new HttpError(403, 'without daemon.token the daemon answers only requests addressed to localhost or 127.0.0.1');
}

export function createHttpServer(opts: ServerOptions): Server {
  const server = createServer((req, res) => {
    void handle(req, res, opts);
  });
  // Slow or stuck clients must not pin sockets forever.
  server.requestTimeout = 30_000;
  server.headersTimeout = 15_000;
  server.keepAliveTimeout = 5_000;
  server.on('clientError', (err, socket) => {
    opts.logger.debug({ err: err.message }, 'HTTP client error');
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });
  return server;
}

async function handle(req: IncomingMessage, res: ServerResponse, opts: ServerOptions): Promise<void> {
  let url: URL;
  try {
    url = new URL(req.url ?? '/', 'http://ferry.invalid');
  } catch {
    sendJson(res, 400, { error: 'invalid request URL' });
    return;
  }
  try {
    let allowed: string[] = [];
    for (const route of opts.routes) {
      const m = route.path.exec(url.pathname);
      if (!m) continue;
      if (route.method !== req.method && !(route.method === 'GET' && req.method === 'HEAD')) {
        allowed.push(route.method);
        continue;
      }
      allowed = [];
      checkAccess(req, route.access, opts.token());
      await route.handler({ req, res, url, params: m.slice(1).map(decodeParam) });
      return;
    }
    if (allowed.length) throw new HttpError(405, `method ${req.method} not allowed here`, { allow: allowed.join(', ') });
    throw new HttpError(404, `no such endpoint: ${req.method} ${url.pathname}`);
  } catch (err) {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (err instanceof HttpError) {
      if (err.status >= 500) opts.logger.error({ path: url.pathname, err: err.message }, 'request failed');
      sendJson(res, err.status, { error: err.message }, err.headers);
      return;
    }
    opts.logger.error({ method: req.method, path: url.pathname, err: (err as Error).stack ?? String(err) }, 'request handler failed');
    sendJson(res, 500, { error: 'internal error (see the daemon log)' });
  }
}

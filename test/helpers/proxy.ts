// Fault injection between a client and a real registry.
//
//  - startProxy: an HTTP proxy (reverse proxy, really) in front of a registry that can corrupt blob
//    bodies, cut connections part-way through a download or an upload, answer scripted statuses
//    (429 with Retry-After, 503, ...), and stall; it counts requests and bytes.
//  - startRedirectingRegistry: a registry front end that sends blob GETs to "object storage" on
//    another host (127.0.0.2) with a 307, the way registries backed by S3/COS/OBS do, and records
//    whether the client leaked its Authorization header there.
//  - startWanProxy: a TCP-level link emulator (one-way delay + shared bandwidth cap) for benchmarks.
//
// The HTTP proxies rewrite Host (the registry builds absolute Location URLs from it, so they would
// come back pointing at the proxy anyway) and rewrite any absolute Location/Link that still names
// the target, so clients keep talking through the proxy.
import { randomBytes } from 'node:crypto';
import { Agent as HttpAgent, createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { connect as netConnect, createServer as createNetServer, type Socket } from 'node:net';
import { LOOPBACK, listenOnFreePort } from './ports.js';
import { closeServer, sendJson } from './token-issuer.js';

// ---------------------------------------------------------------------------------------------
// startProxy

export interface StatusSequence {
  /** Tested against `${METHOD} ${path-with-query}`, e.g. /^PUT \/v2\/.+\/manifests\//. */
  match: RegExp;
  /** Answered in order to successive matching requests; once used up, requests are forwarded. */
  statuses: number[];
  /** Seconds, sent as Retry-After with every injected status. */
  retryAfter?: number;
}

export interface ProxyFaults {
  /** Corrupt one byte (the first of the body) of every blob GET response: a "lying source". */
  flipByteInBlobs?: boolean;
  /** Cut the connection after this many body bytes (see resetOn). */
  resetAfterBytes?: number;
  /**
   * 'download' (default): blob GET response bodies; 'upload': request bodies of PATCH/PUT to
   * /blobs/uploads/ (the bytes before the cut do reach the registry, like a real broken link).
   */
  resetOn?: 'download' | 'upload';
  /** How many connections to cut before behaving again. Default: unlimited. */
  resetTimes?: number;
  /** Restrict resets to requests whose `${METHOD} ${path}` matches. */
  resetMatch?: RegExp;
  /** Scripted answers; several sequences are checked in order. */
  statusSequence?: StatusSequence | StatusSequence[];
  /** Delay every (matching, see stallMatch) request by this long before forwarding it. */
  stallMs?: number;
  stallMatch?: RegExp;
}

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

export interface TestProxy {
  /** http://127.0.0.1:PORT: use it in place of the registry URL. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly target: string;
  /** The live fault settings: mutate fields, or call setFaults to replace them (and reset budgets). */
  faults: ProxyFaults;
  setFaults(faults: ProxyFaults): void;
  readonly requests: ProxiedRequest[];
  /** Request body bytes forwarded to the registry. */
  readonly bytesUp: number;
  /** Response body bytes sent to the client. */
  readonly bytesDown: number;
  readonly resets: number;
  readonly flips: number;
  readonly injectedStatuses: number;
  /** Requests seen matching `${METHOD} ${path}`. */
  count(match: RegExp): number;
  resetStats(): void;
  stop(): Promise<void>;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'upgrade']);
const BLOB_GET = /^\/v2\/.+\/blobs\/[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+(?:\?.*)?$/;
const UPLOAD = /^\/v2\/.+\/blobs\/uploads\//;

const ERROR_CODES: Record<number, string> = { 400: 'BAD_REQUEST', 401: 'UNAUTHORIZED', 403: 'DENIED', 404: 'NOT_FOUND', 429: 'TOOMANYREQUESTS', 500: 'UNKNOWN', 502: 'UNAVAILABLE', 503: 'UNAVAILABLE', 504: 'UNAVAILABLE' };

export async function startProxy(targetUrl: string, faults: ProxyFaults = {}): Promise<TestProxy> {
  const target = new URL(targetUrl);
  const agent = new HttpAgent({ keepAlive: true, maxSockets: 64 });
  const stats = { bytesUp: 0, bytesDown: 0, resets: 0, flips: 0, injectedStatuses: 0 };
  const requests: ProxiedRequest[] = [];
  let current = faults;
  let resetBudgetUsed = 0;
  let sequencePositions = new WeakMap<StatusSequence, number>();
  let self = '';

  const server = createServer((req, res) => {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const record: ProxiedRequest = { method, path, headers: req.headers };
    requests.push(record);
    const line = `${method} ${path}`;
    const f = current;

    // Scripted statuses first: they stand for a registry (or a gateway in front of it) refusing.
    for (const seq of f.statusSequence === undefined ? [] : Array.isArray(f.statusSequence) ? f.statusSequence : [f.statusSequence]) {
      const pos = sequencePositions.get(seq) ?? 0;
      if (pos < seq.statuses.length && seq.match.test(line)) {
        sequencePositions.set(seq, pos + 1);
        const status = seq.statuses[pos] ?? 500;
        stats.injectedStatuses++;
        record.fault = 'status';
        record.status = status;
        // Drain the request body before answering so the keep-alive connection stays usable.
        req.resume();
        req.once('end', () => {
          if (seq.retryAfter !== undefined) res.setHeader('Retry-After', String(seq.retryAfter));
          sendJson(res, status, { errors: [{ code: ERROR_CODES[status] ?? 'UNKNOWN', message: `injected by test proxy (${status})`, detail: null }] });
        });
        return;
      }
    }

    const resetApplies = (direction: 'download' | 'upload'): boolean =>
      f.resetAfterBytes !== undefined &&
      (f.resetOn ?? 'download') === direction &&
      resetBudgetUsed < (f.resetTimes ?? Infinity) &&
      (f.resetMatch === undefined || f.resetMatch.test(line));

    const forward = (): void => {
      const isBlobGet = method === 'GET' && BLOB_GET.test(path);
      const uploadReset = (method === 'PATCH' || method === 'PUT') && UPLOAD.test(path) && resetApplies('upload');
      forwardRequest(req, res, {
        target,
        agent,
        self,
        onUpBytes: (n) => (stats.bytesUp += n),
        onDownBytes: (n) => (stats.bytesDown += n),
        uploadCutAfter: uploadReset ? f.resetAfterBytes : undefined,
        onUploadCut: () => {
          resetBudgetUsed++;
          stats.resets++;
          record.fault = 'reset';
        },
        downloadCutAfter: isBlobGet && resetApplies('download') ? f.resetAfterBytes : undefined,
        onDownloadCut: () => {
          resetBudgetUsed++;
          stats.resets++;
          record.fault = 'reset';
        },
        flip: isBlobGet && f.flipByteInBlobs === true,
        onFlip: () => {
          stats.flips++;
          record.fault = 'flip';
        },
        onStatus: (s) => (record.status = s),
      });
    };

    if (f.stallMs !== undefined && f.stallMs > 0 && (f.stallMatch === undefined || f.stallMatch.test(line))) {
      record.fault = 'stall';
      const timer = setTimeout(forward, f.stallMs);
      // res 'close' before we answered = the client gave up; do not forward a dead request.
      res.once('close', () => clearTimeout(timer));
    } else {
      forward();
    }
  });
  server.keepAliveTimeout = 1000;
  const port = await listenOnFreePort(server);
  self = `http://${LOOPBACK}:${port}`;

  return {
    url: self,
    host: `${LOOPBACK}:${port}`,
    port,
    target: target.origin,
    get faults() {
      return current;
    },
    set faults(f: ProxyFaults) {
      current = f;
    },
    setFaults(f: ProxyFaults) {
      current = f;
      resetBudgetUsed = 0;
      sequencePositions = new WeakMap();
    },
    requests,
    get bytesUp() {
      return stats.bytesUp;
    },
    get bytesDown() {
      return stats.bytesDown;
    },
    get resets() {
      return stats.resets;
    },
    get flips() {
      return stats.flips;
    },
    get injectedStatuses() {
      return stats.injectedStatuses;
    },
    count: (match) => requests.filter((r) => match.test(`${r.method} ${r.path}`)).length,
    resetStats() {
      requests.length = 0;
      Object.assign(stats, { bytesUp: 0, bytesDown: 0, resets: 0, flips: 0, injectedStatuses: 0 });
    },
    async stop() {
      await closeServer(server);
      agent.destroy();
    },
  };
}

interface ForwardOptions {
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
}

/** Streams one request to the target and its answer back, applying byte-level faults on the way. */
function forwardRequest(req: IncomingMessage, res: ServerResponse, o: ForwardOptions): void {
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

function rewriteOrigin(value: string | string[] | number, from: string, to: string): string | string[] {
  const one = (s: string): string => s.split(from).join(to);
  if (Array.isArray(value)) return value.map(one);
  return one(String(value));
}

// ---------------------------------------------------------------------------------------------
// startRedirectingRegistry

export interface RedirectingRegistry {
  /** http://127.0.0.1:PORT: the "registry" the client talks to. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** The "object storage" origin blob GETs are redirected to (http://127.0.0.2:PORT normally). */
  readonly otherUrl: string;
  /** 307s sent. */
  readonly redirects: number;
  /** True once any request reached the other host with an Authorization header. */
  readonly authorizationSeenByOtherHost: boolean;
  /** Requests the other host received. */
  readonly otherHostRequests: ProxiedRequest[];
  /** Requests the registry front end received. */
  readonly requests: ProxiedRequest[];
  stop(): Promise<void>;
}

export interface RedirectingOptions {
  /** Answer requests that carry Authorization with 400, as S3 does ("only one auth mechanism allowed"). Default true. */
  rejectAuthorization?: boolean;
  /** Redirect blob HEADs too (distribution does when `redirect` is on). Default false. */
  redirectHead?: boolean;
}

/**
 * A registry front end whose blob GETs answer 307 to another host, like a registry on object
 * storage. The front end first checks the client's access with a HEAD to the real registry (so
 * 401/404 come back as usual); the redirect URL then carries a one-off ticket, standing in for a
 * pre-signed URL, with which the other host fetches the blob using the *original* credentials
 * server-side. A client that (wrongly) forwards Authorization is recorded and, by default, refused.
 */
export async function startRedirectingRegistry(targetUrl: string, opts: RedirectingOptions = {}): Promise<RedirectingRegistry> {
  const target = new URL(targetUrl);
  const agent = new HttpAgent({ keepAlive: true });
  const tickets = new Map<string, { path: string; authorization?: string }>();
  const requests: ProxiedRequest[] = [];
  const otherHostRequests: ProxiedRequest[] = [];
  const state = { redirects: 0, authSeen: false };
  let self = '';
  let otherOrigin = '';

  // The "object storage" host.
  const other = createServer((req, res) => {
    const path = req.url ?? '/';
    const record: ProxiedRequest = { method: req.method ?? 'GET', path, headers: req.headers };
    otherHostRequests.push(record);
    if (req.headers.authorization !== undefined) {
      state.authSeen = true;
      if (opts.rejectAuthorization ?? true) {
        record.status = 400;
        req.resume();
        const body = '<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified</Message></Error>';
        res.writeHead(400, { 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(body) });
        res.end(body);
        return;
      }
    }
    const ticket = tickets.get(new URL(path, 'http://x').searchParams.get('X-Ticket') ?? '');
    if (ticket === undefined) {
      record.status = 403;
      req.resume();
      res.writeHead(403, { 'Content-Type': 'application/xml' });
      res.end('<Error><Code>AccessDenied</Code></Error>');
      return;
    }
    forwardRequest(req, res, {
      target,
      agent,
      self: otherOrigin,
      path: ticket.path,
      // Server-side credentials from the ticket; never the client's (it should have sent none).
      setHeaders: { authorization: ticket.authorization ?? null },
      onStatus: (s) => (record.status = s),
    });
  });
  let otherHost = '127.0.0.2';
  let otherPort: number;
  try {
    otherPort = await listenOnFreePort(other, otherHost);
  } catch {
    // Not Linux (only 127.0.0.1 is loopback on macOS by default): "localhost" is still a
    // different host name from 127.0.0.1 as far as a client's origin checks go.
    otherPort = await listenOnFreePort(other, LOOPBACK);
    otherHost = 'localhost';
  }
  otherOrigin = `http://${otherHost}:${otherPort}`;

  // The registry front end.
  const front = createServer((req, res) => {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const record: ProxiedRequest = { method, path, headers: req.headers };
    requests.push(record);
    const redirectable = (method === 'GET' || (method === 'HEAD' && opts.redirectHead === true)) && BLOB_GET.test(path);
    if (!redirectable) {
      forwardRequest(req, res, { target, agent, self, onStatus: (s) => (record.status = s) });
      return;
    }
    // Check access and existence with a HEAD carrying the client's credentials.
    forwardRequest(req, res, {
      target,
      agent,
      self,
      method: 'HEAD',
      onStatus: (s) => (record.status = s),
      intercept: (upstream) => {
        if (upstream.statusCode !== 200) {
          // Let the normal path relay the refusal (401 challenge, 404) with a body: re-issue as GET.
          upstream.resume();
          forwardRequest(req, res, { target, agent, self, bodyless: true, onStatus: (s) => (record.status = s) });
          return true;
        }
        upstream.resume();
        const id = randomBytes(12).toString('hex');
        const authorization = req.headers.authorization;
        tickets.set(id, authorization === undefined ? { path } : { path, authorization });
        const digest = path.split('?')[0]?.split('/blobs/')[1] ?? '';
        const location = `${otherOrigin}/ferry-test-bucket/blobs/${digest.replace(':', '/')}/data?X-Ticket=${id}`;
        state.redirects++;
        record.status = 307;
        res.writeHead(307, { Location: location, 'Content-Length': '0', 'Docker-Distribution-Api-Version': 'registry/2.0' });
        res.end();
        return true;
      },
    });
  });
  const port = await listenOnFreePort(front);
  self = `http://${LOOPBACK}:${port}`;

  return {
    url: self,
    host: `${LOOPBACK}:${port}`,
    port,
    otherUrl: otherOrigin,
    get redirects() {
      return state.redirects;
    },
    get authorizationSeenByOtherHost() {
      return state.authSeen;
    },
    otherHostRequests,
    requests,
    async stop() {
      await Promise.all([closeServer(front), closeServer(other)]);
      agent.destroy();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// startWanProxy

export interface WanOptions {
  /** Added to every chunk in each direction (RTT = 2x this). */
  oneWayDelayMs: number;
  /** Shared by all connections, per direction (a full-duplex link). 0 or Infinity = unlimited. */
  bandwidthBytesPerSec: number;
}

export interface WanProxy {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** Live settings (changes apply to data arriving afterwards). */
  options: WanOptions;
  /** Client → target bytes delivered. */
  readonly bytesUp: number;
  /** Target → client bytes delivered. */
  readonly bytesDown: number;
  /** Connections accepted so far. */
  readonly connections: number;
  stop(): Promise<void>;
}

/**
 * A link emulator at the TCP level. Each direction is a FIFO "wire": a chunk may start transmitting
 * when the previous one (from any connection) finished, takes size/bandwidth to transmit, and
 * arrives oneWayDelay later. Each connection-direction keeps a queue served by ONE timer at a time
 * (the head's delivery time), so cost is per chunk, never per byte. When too much is in flight the
 * sending socket is paused, so memory stays bounded and TCP back-pressure reaches the sender.
 *
 * Not emulated: the handshake RTT (the proxy accepts locally, then connects to the target at once)
 * and loss; a benchmark that wants connection-setup cost should count it separately.
 */
export async function startWanProxy(target: { host: string; port: number }, options: WanOptions): Promise<WanProxy> {
  const state = { bytesUp: 0, bytesDown: 0, connections: 0 };
  let opts = { ...options };
  // Virtual time at which each direction's wire is free again (shared by all connections).
  const wire = { up: 0, down: 0 };
  const sockets = new Set<Socket>();

  // allowHalfOpen on both sides: a FIN must travel with the same delay as the data before it, so
  // neither socket may end (or be destroyed) by itself when its peer ends; pipeDelayed forwards the
  // end in order. Errors, on the other hand, tear down both sides at once.
  const server = createNetServer({ allowHalfOpen: true }, (client) => {
    state.connections++;
    const upstream = netConnect({ host: target.host, port: target.port, allowHalfOpen: true });
    sockets.add(client);
    sockets.add(upstream);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const kill = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', kill);
    upstream.on('error', kill);
    client.on('close', () => sockets.delete(client));
    upstream.on('close', () => sockets.delete(upstream));
    pipeDelayed(client, upstream, 'up');
    pipeDelayed(upstream, client, 'down');
  });

  const MAX_SLICE = 16 * 1024; // smooths pacing of large reads without per-byte work
  const HIGH_WATER = 1024 * 1024; // bytes queued per connection-direction before pausing the source

  function pipeDelayed(from: Socket, to: Socket, dir: 'up' | 'down'): void {
    const queue: { at: number; chunk: Buffer | null }[] = [];
    let queued = 0;
    let timer: NodeJS.Timeout | undefined;

    const schedule = (): void => {
      if (timer !== undefined || queue.length === 0) return;
      const wait = Math.max(0, (queue[0]?.at ?? 0) - performance.now());
      timer = setTimeout(flush, wait);
    };
    const flush = (): void => {
      timer = undefined;
      const now = performance.now();
      while (queue.length > 0 && (queue[0]?.at ?? Infinity) <= now + 1) {
        const item = queue.shift();
        if (item === undefined) break;
        if (item.chunk === null) {
          to.end();
          continue;
        }
        queued -= item.chunk.length;
        if (dir === 'up') state.bytesUp += item.chunk.length;
        else state.bytesDown += item.chunk.length;
        if (!to.destroyed) to.write(item.chunk);
      }
      maybeResume();
      schedule();
    };
    // Resume the sender only when both our queue and the receiver's socket buffer have room.
    const maybeResume = (): void => {
      if (from.isPaused() && queued + to.writableLength < HIGH_WATER / 2) from.resume();
    };
    to.on('drain', maybeResume);

    from.on('data', (data: Buffer) => {
      const bw = opts.bandwidthBytesPerSec;
      for (let off = 0; off < data.length; off += MAX_SLICE) {
        const chunk = data.subarray(off, Math.min(off + MAX_SLICE, data.length));
        const now = performance.now();
        let sentAt = now;
        if (bw > 0 && Number.isFinite(bw)) {
          const start = Math.max(now, wire[dir]);
          wire[dir] = start + (chunk.length / bw) * 1000;
          sentAt = wire[dir];
        }
        queue.push({ at: sentAt + opts.oneWayDelayMs, chunk });
        queued += chunk.length;
      }
      if (queued + to.writableLength > HIGH_WATER) from.pause();
      schedule();
    });
    // Half-close travels with the same delay, after the data queued before it.
    from.on('end', () => {
      const last = queue.length > 0 ? (queue[queue.length - 1]?.at ?? 0) : 0;
      queue.push({ at: Math.max(last, performance.now() + opts.oneWayDelayMs), chunk: null });
      schedule();
    });
    to.on('close', () => {
      // Nothing left to deliver to: drop the queue and its timer.
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      queue.length = 0;
      queued = 0;
    });
  }

  const port = await listenOnFreePort(server);
  return {
    url: `http://${LOOPBACK}:${port}`,
    host: `${LOOPBACK}:${port}`,
    port,
    get options() {
      return opts;
    },
    set options(o: WanOptions) {
      opts = { ...o };
    },
    get bytesUp() {
      return state.bytesUp;
    },
    get bytesDown() {
      return state.bytesDown;
    },
    get connections() {
      return state.connections;
    },
    stop() {
      return new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      });
    },
  };
}


// startProxy: a fault-injecting reverse proxy in front of a real registry. It can corrupt blob
// bodies, cut connections part-way through a download or an upload, answer scripted statuses (429
// with Retry-After, 503, ...), and stall; it counts requests and bytes. The forwarding itself is in
// http-forward.ts.
import { Agent as HttpAgent, createServer } from 'node:http';
import { LOOPBACK, listenOnFreePort } from './ports.js';
import { BLOB_GET, type ProxiedRequest, UPLOAD, forwardRequest } from './http-forward.js';
import { closeServer, sendJson } from './token-issuer.js';

export type { ProxiedRequest } from './http-forward.js';

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
  /** Headers added to the registry's answers to matching requests (e.g. OCI-Chunk-Min-Length on upload POSTs). */
  responseHeaders?: { match: RegExp; headers: Record<string, string> };
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
        responseHeaders: f.responseHeaders?.match.test(line) ? f.responseHeaders.headers : undefined,
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

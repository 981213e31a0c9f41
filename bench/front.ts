// A counting HTTP front for a registry: forwards every request unchanged (Host header included, so
// the registry's Location URLs still point at whoever the client talked to) and counts it by kind.
// The scale benchmark puts one in front of each registry so that Ferry and the minimal client are
// counted the same way, by something that is neither of them.
import { type IncomingMessage, type ServerResponse, Agent, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream';

export type RequestKind =
  | 'ping'
  | 'catalog'
  | 'tags/list'
  | 'manifest HEAD'
  | 'manifest GET'
  | 'manifest PUT'
  | 'blob HEAD'
  | 'blob GET'
  | 'mount POST'
  | 'upload POST'
  | 'upload PATCH'
  | 'upload PUT'
  | 'referrers'
  | 'DELETE'
  | 'other';

export function classify(method: string, path: string): RequestKind {
  const p = path.split('?')[0]!;
  if (p === '/v2/' || p === '/v2') return 'ping';
  if (p === '/v2/_catalog') return 'catalog';
  if (method === 'DELETE') return 'DELETE';
  if (p.endsWith('/tags/list')) return 'tags/list';
  if (/\/referrers\/[^/]+$/.test(p)) return 'referrers';
  if (/\/manifests\/[^/]+$/.test(p)) {
    if (method === 'HEAD') return 'manifest HEAD';
    if (method === 'GET') return 'manifest GET';
    if (method === 'PUT') return 'manifest PUT';
    return 'other';
  }
  if (p.includes('/blobs/uploads')) {
    if (method === 'POST') return path.includes('mount=') ? 'mount POST' : 'upload POST';
    if (method === 'PATCH') return 'upload PATCH';
    if (method === 'PUT') return 'upload PUT';
    return 'other';
  }
  if (/\/blobs\/sha256:[0-9a-f]+$/.test(p)) return method === 'HEAD' ? 'blob HEAD' : method === 'GET' ? 'blob GET' : 'other';
  return 'other';
}

export interface CountingFront {
  url: string;
  host: string;
  port: number;
  counts: Partial<Record<RequestKind, number>>;
  /** Returns the counts so far and starts from zero. */
  take(): Partial<Record<RequestKind, number>>;
  stop(): Promise<void>;
}

export async function startCountingFront(target: { host: string; port: number }): Promise<CountingFront> {
  const agent = new Agent({ keepAlive: true, maxSockets: Infinity });
  const front: Pick<CountingFront, 'counts'> = { counts: {} };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const kind = classify(req.method ?? 'GET', req.url ?? '/');
    front.counts[kind] = (front.counts[kind] ?? 0) + 1;
    const up = request(
      { host: target.host, port: target.port, method: req.method, path: req.url, headers: req.headers, agent },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        pipeline(upRes, res, () => undefined);
      },
    );
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    pipeline(req, up, () => undefined);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    port,
    get counts() {
      return front.counts;
    },
    take() {
      const c = front.counts;
      front.counts = {};
      return c;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
}

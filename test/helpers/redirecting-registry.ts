// startRedirectingRegistry: a registry front end that sends blob GETs to "object storage" on another
// host (127.0.0.2) with a 307, the way registries backed by S3/COS/OBS do, and records whether the
// client leaked its Authorization header there.
import { randomBytes } from 'node:crypto';
import { Agent as HttpAgent, createServer } from 'node:http';
import { LOOPBACK, listenOnFreePort } from './ports.js';
import { BLOB_GET, type ProxiedRequest, forwardRequest } from './http-forward.js';
import { closeServer } from './token-issuer.js';

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

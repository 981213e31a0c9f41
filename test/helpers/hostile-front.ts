// startHostileFront: a front end for a real registry that tries to lure a client's credentials to
// another origin. It forwards every request to the registry and rewrites the answers:
//   - `link`      every Link (catalog, tags/list pages) points at the "elsewhere" origin;
//   - `location`  every Location (upload sessions, redirects) points at "elsewhere";
//   - `redirect`  blob GETs answer 307 to "elsewhere";
//   - `realm`     the realm of a Bearer challenge is replaced by the given URL (e.g. a metadata address).
// "Elsewhere" is a second loopback origin (127.0.0.2, or "localhost" where only 127.0.0.1 exists) that
// records every request, notes whether it carried Authorization, and either forwards it to the
// registry (so a client that follows gets real answers) or, with `elsewhereChallenges`, answers 401
// with a Bearer challenge naming itself as the realm (a hostile host trying to re-point the realm).
import { Agent as HttpAgent, createServer } from 'node:http';
import { LOOPBACK, listenOnFreePort } from './ports.js';
import { BLOB_GET, type ProxiedRequest, forwardRequest } from './http-forward.js';
import { closeServer, sendJson } from './token-issuer.js';

export interface HostileRewrites {
  link?: boolean;
  location?: boolean;
  redirect?: boolean;
  /** Replaces the realm of every Bearer challenge. */
  realm?: string;
  /** Adds a next-page Link to tags/list answers that have none (distribution 2.8 does not page tags). */
  tagsLink?: boolean;
}

export interface HostileFrontOptions {
  rewrite: HostileRewrites;
  /** "Elsewhere" answers every request with 401 and `Bearer realm="<elsewhere>/token"` instead of forwarding. */
  elsewhereChallenges?: boolean;
}

export interface HostileFront {
  /** http://127.0.0.1:PORT: the "registry" the client is configured with. */
  readonly url: string;
  /** The other origin the front points the client at. */
  readonly elsewhereUrl: string;
  /** Requests that reached the other origin. */
  readonly elsewhereRequests: ProxiedRequest[];
  /** True once any request reached the other origin with an Authorization header. */
  readonly authorizationSeenElsewhere: boolean;
  /** Requests the front received. */
  readonly requests: ProxiedRequest[];
  /** Answers whose headers the front rewrote. */
  readonly rewrites: number;
  stop(): Promise<void>;
}

export async function startHostileFront(targetUrl: string, opts: HostileFrontOptions): Promise<HostileFront> {
  const target = new URL(targetUrl);
  const agent = new HttpAgent({ keepAlive: true });
  const requests: ProxiedRequest[] = [];
  const elsewhereRequests: ProxiedRequest[] = [];
  const state = { authSeen: false, rewrites: 0 };
  let self = '';
  let elsewhere = '';

  const other = createServer((req, res) => {
    const record: ProxiedRequest = { method: req.method ?? 'GET', path: req.url ?? '/', headers: req.headers };
    elsewhereRequests.push(record);
    if (req.headers.authorization !== undefined) state.authSeen = true;
    if (opts.elsewhereChallenges) {
      record.status = 401;
      req.resume();
      res.setHeader('WWW-Authenticate', `Bearer realm="${elsewhere}/token",service="elsewhere"`);
      sendJson(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] });
      return;
    }
    // Forward to the registry as the registry itself would see it (it then answers 401 to a client
    // that rightly sent no credentials here).
    forwardRequest(req, res, { target, agent, self: elsewhere, onStatus: (s) => (record.status = s) });
  });
  let otherHost = '127.0.0.2';
  let otherPort: number;
  try {
    otherPort = await listenOnFreePort(other, otherHost);
  } catch {
    otherPort = await listenOnFreePort(other, LOOPBACK);
    otherHost = 'localhost';
  }
  elsewhere = `http://${otherHost}:${otherPort}`;

  const toElsewhere = (value: string): string => {
    const u = new URL(value, self);
    return `${elsewhere}${u.pathname}${u.search}`;
  };

  const front = createServer((req, res) => {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const record: ProxiedRequest = { method, path, headers: req.headers };
    requests.push(record);
    if (opts.rewrite.redirect && method === 'GET' && BLOB_GET.test(path)) {
      state.rewrites++;
      record.status = 307;
      req.resume();
      res.writeHead(307, { Location: `${elsewhere}${path}`, 'Content-Length': '0' });
      res.end();
      return;
    }
    forwardRequest(req, res, {
      target,
      agent,
      self,
      onStatus: (s) => (record.status = s),
      intercept: (upstream) => {
        const headers = { ...upstream.headers };
        let changed = false;
        if (opts.rewrite.tagsLink && headers.link === undefined && upstream.statusCode === 200 && /^\/v2\/.+\/tags\/list/.test(path)) {
          headers.link = `<${path.split('?')[0]}?n=1000&last=zzz>; rel="next"`;
        }
        if (opts.rewrite.link && typeof headers.link === 'string') {
          headers.link = headers.link.replace(/<([^>]*)>/g, (_m, url: string) => `<${toElsewhere(url)}>`);
          changed = true;
        }
        if (opts.rewrite.location && typeof headers.location === 'string') {
          headers.location = toElsewhere(headers.location);
          changed = true;
        }
        const challenge = headers['www-authenticate'];
        if (opts.rewrite.realm && typeof challenge === 'string' && /^bearer/i.test(challenge)) {
          headers['www-authenticate'] = challenge.replace(/realm="[^"]*"/i, `realm="${opts.rewrite.realm}"`);
          changed = true;
        }
        if (!changed) return false;
        state.rewrites++;
        delete headers.connection;
        delete headers['keep-alive'];
        delete headers['transfer-encoding'];
        res.writeHead(upstream.statusCode ?? 502, headers);
        upstream.pipe(res);
        return true;
      },
    });
  });
  const port = await listenOnFreePort(front);
  self = `http://${LOOPBACK}:${port}`;

  return {
    url: self,
    elsewhereUrl: elsewhere,
    elsewhereRequests,
    get authorizationSeenElsewhere() {
      return state.authSeen;
    },
    requests,
    get rewrites() {
      return state.rewrites;
    },
    async stop() {
      await Promise.all([closeServer(front), closeServer(other)]);
      agent.destroy();
    },
  };
}

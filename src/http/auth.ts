// Credentials bound to an origin. The auth layer adds an Authorizer's headers only to requests whose
// URL is on the Authorizer's origin; a request anywhere else (a redirect to object storage, an upload
// Location or a page Link on another host) goes without credentials. A caller never sets
// Authorization itself: the layer removes it from any request's own headers.
// On a 401 from the origin the Authorizer may refresh (answer a challenge, drop a refused token) and
// the request is sent once more when its body can be replayed.
import type { Authorizer, HttpRequest, HttpResponse, Layer } from './types.js';
import { isReplayable } from './types.js';

export interface Credentials {
  username: string;
  password: string;
}

/** The Basic Authorization value: built here only. Robot names such as robot$proj+sync pass as they are. */
export function basicAuthorization(creds: Credentials): string {
  return `Basic ${Buffer.from(`${creds.username}:${creds.password}`, 'utf8').toString('base64')}`;
}

/** Basic credentials for one origin (Harbor's API, ChartMuseum, SWR's dockyard, a token realm). */
export function basicAuthorizer(origin: string, credentials: Credentials | (() => Promise<Credentials | undefined>) | undefined): Authorizer {
  return {
    origin,
    async authorize() {
      const creds = typeof credentials === 'function' ? await credentials() : credentials;
      return creds ? { authorization: basicAuthorization(creds) } : undefined;
    },
  };
}

/**
 * Marks an answer the Authorizer would have repeated with fresh credentials, had its body been
 * replayable (a one-shot stream): the caller may repeat the whole operation.
 */
export const REFRESHED_CREDENTIALS = Symbol('ferry.refreshedCredentials');
export type AuthAnswer = HttpResponse & { [REFRESHED_CREDENTIALS]?: boolean };

/** At most this many sends of one request by the auth layer (first + re-authentication). */
const MAX_AUTH_SENDS = 3;

export function authLayer(): Layer {
  return (next) => async (req: HttpRequest): Promise<HttpResponse> => {
    const headers = withoutAuthorization(req.headers);
    const auth = req.auth;
    if (!auth || req.url.origin !== auth.origin) return next({ ...req, headers, auth: undefined });
    for (let send = 1; ; send++) {
      const sent = await auth.authorize(req);
      const res: AuthAnswer = await next({ ...req, headers: { ...headers, ...sent } });
      if (res.statusCode !== 401 || !auth.onUnauthorized || send >= MAX_AUTH_SENDS) return res;
      if (!(await auth.onUnauthorized(res, req, sent))) return res;
      if (!isReplayable(req.body)) {
        res[REFRESHED_CREDENTIALS] = true;
        return res;
      }
      await res.body.dump().catch(() => undefined);
    }
  };
}

function withoutAuthorization(headers: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers ?? {})) if (k.toLowerCase() !== 'authorization') out[k] = v;
  return out;
}

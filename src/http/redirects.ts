// Redirects of GET and HEAD (blob downloads sent to object storage, moved API paths). Each hop is a
// new request through the layers below, so it is retried, limited and counted like any other; its
// credentials stay bound to their origin: a hop to another origin carries none (object storage also
// rejects a second auth mechanism next to its pre-signed URL).
import { RegistryError } from '../registry/errors.js';
import { type HttpRequest, type HttpResponse, type Layer, headerValue } from './types.js';

export const MAX_REDIRECTS = 5;
const REDIRECT_STATUS = new Set([301, 302, 303, 307, 308]);

export function redirectLayer(registry: string, max = MAX_REDIRECTS): Layer {
  return (next) => async (first: HttpRequest): Promise<HttpResponse> => {
    const follow = first.followRedirects ?? (first.method === 'GET' || first.method === 'HEAD');
    let req = first;
    for (let hop = 0; ; hop++) {
      const res = await next(req);
      const location = headerValue(res.headers, 'location');
      if (!follow || !REDIRECT_STATUS.has(res.statusCode) || !location) return res;
      await res.body.dump().catch(() => undefined);
      if (hop >= max) throw new RegistryError(`too many redirects (last ${new URL(location, req.url).origin})`, { registry, repository: first.repository, method: first.method });
      const url = new URL(location, req.url);
      req = { ...req, url, auth: first.auth && url.origin === first.auth.origin ? first.auth : undefined };
    }
  };
}

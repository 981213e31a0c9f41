// A deliberately small Distribution client for the benchmark: seeding the source, the raw lower-bound
// copy, and checking destinations. It is NOT Ferry's client (a benchmark that measures Ferry against
// Ferry's own code would hide its overheads) and it is not the test helpers' client either, because
// that one buffers bodies: here blobs are streams end to end.
//
// Auth: anonymous, Basic, or Bearer (token fetched from the challenge's realm with Basic credentials,
// cached per scope until shortly before `expires_in`). Because a streamed request body cannot be
// replayed after a 401, the client learns the challenge once (GET /v2/) and fetches the token
// *before* each request that needs a new scope.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { Agent, type Dispatcher, request } from 'undici';

export interface Endpoint {
  url: string;
  username?: string | undefined;
  password?: string | undefined;
}

type Scheme = { kind: 'none' } | { kind: 'basic' } | { kind: 'bearer'; realm: string; service: string | undefined };

export class HttpError extends Error {
  constructor(
    readonly what: string,
    readonly status: number,
    readonly body: string,
  ) {
    super(`${what}: HTTP ${status} ${body.slice(0, 300)}`);
  }
}

export const ACCEPT_MANIFESTS = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

export function sha256(bytes: Buffer | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

export class RawRegistry {
  readonly base: URL;
  readonly dispatcher: Dispatcher;
  private scheme: Promise<Scheme> | undefined;
  private readonly tokens = new Map<string, { token: string; until: number }>();
  private readonly pendingTokens = new Map<string, Promise<string>>();
  tokenRequests = 0;

  constructor(
    readonly endpoint: Endpoint,
    dispatcher?: Dispatcher,
  ) {
    this.base = new URL(endpoint.url);
    this.dispatcher = dispatcher ?? new Agent({ keepAliveTimeout: 30_000, keepAliveMaxTimeout: 60_000, headersTimeout: 300_000, bodyTimeout: 300_000 });
  }

  private basic(): string | undefined {
    const { username, password } = this.endpoint;
    return username === undefined ? undefined : `Basic ${Buffer.from(`${username}:${password ?? ''}`).toString('base64')}`;
  }

  private discover(): Promise<Scheme> {
    this.scheme ??= (async (): Promise<Scheme> => {
      const res = await request(new URL('/v2/', this.base), { method: 'GET', dispatcher: this.dispatcher });
      await res.body.dump();
      if (res.statusCode === 200) return { kind: 'none' };
      const header = res.headers['www-authenticate'];
      const value = Array.isArray(header) ? header.join(', ') : (header ?? '');
      if (/^\s*basic/i.test(value)) return { kind: 'basic' };
      const params: Record<string, string> = {};
      for (const m of value.matchAll(/(\w+)="([^"]*)"/g)) params[m[1]!.toLowerCase()] = m[2]!;
      if (!/^\s*bearer/i.test(value) || !params.realm) throw new Error(`${this.base.origin}: unsupported challenge ${JSON.stringify(value)}`);
      return { kind: 'bearer', realm: params.realm, service: params.service };
    })();
    return this.scheme;
  }

  /** The Authorization header for a request needing `scope` (e.g. repository:a/b:pull,push). */
  async authorization(scope: string): Promise<string | undefined> {
    const scheme = await this.discover();
    if (scheme.kind === 'none') return undefined;
    if (scheme.kind === 'basic') return this.basic();
    const cached = this.tokens.get(scope);
    if (cached && cached.until > Date.now()) return `Bearer ${cached.token}`;
    let pending = this.pendingTokens.get(scope);
    if (!pending) {
      pending = this.fetchToken(scheme, scope).finally(() => this.pendingTokens.delete(scope));
      this.pendingTokens.set(scope, pending);
    }
    return `Bearer ${await pending}`;
  }

  private async fetchToken(scheme: { realm: string; service: string | undefined }, scope: string): Promise<string> {
    const url = new URL(scheme.realm);
    if (scheme.service) url.searchParams.set('service', scheme.service);
    url.searchParams.set('scope', scope);
    const headers: Record<string, string> = {};
    const basic = this.basic();
    if (basic) headers.authorization = basic;
    this.tokenRequests++;
    const res = await request(url, { method: 'GET', headers, dispatcher: this.dispatcher });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new HttpError('token', res.statusCode, text);
    const json = JSON.parse(text) as { token?: string; access_token?: string; expires_in?: number };
    const token = json.token ?? json.access_token;
    if (!token) throw new Error('token response without a token');
    this.tokens.set(scope, { token, until: Date.now() + Math.max(10, (json.expires_in ?? 60) - 30) * 1000 });
    return token;
  }

  private async send(
    method: Dispatcher.HttpMethod,
    pathOrUrl: string | URL,
    scope: string,
    opts: { headers?: Record<string, string>; body?: Dispatcher.DispatchOptions['body'] } = {},
  ): Promise<Dispatcher.ResponseData> {
    const headers: Record<string, string> = { 'user-agent': 'ferry-bench-raw', ...opts.headers };
    const auth = await this.authorization(scope);
    if (auth) headers.authorization = auth;
    return request(new URL(pathOrUrl, this.base), { method, headers, body: opts.body ?? null, dispatcher: this.dispatcher });
  }

  /** Opens a blob for reading (the body must be consumed or destroyed). */
  async getBlob(repo: string, digest: string): Promise<{ body: Readable; size: number }> {
    const res = await this.send('GET', `/v2/${repo}/blobs/${digest}`, `repository:${repo}:pull`);
    if (res.statusCode !== 200) throw new HttpError(`GET blob ${repo}@${digest}`, res.statusCode, await res.body.text());
    return { body: res.body, size: Number(res.headers['content-length'] ?? -1) };
  }

  async headBlob(repo: string, digest: string): Promise<boolean> {
    const res = await this.send('HEAD', `/v2/${repo}/blobs/${digest}`, `repository:${repo}:pull`);
    await res.body.dump();
    if (res.statusCode === 200) return true;
    if (res.statusCode === 404) return false;
    throw new HttpError(`HEAD blob ${repo}@${digest}`, res.statusCode, '');
  }

  /** POST + monolithic PUT ?digest=. `body` may be a stream; its length must be `size`. */
  async upload(repo: string, digest: string, size: number, body: Readable | Buffer | AsyncIterable<Buffer>): Promise<void> {
    const scope = `repository:${repo}:pull,push`;
    const start = await this.send('POST', `/v2/${repo}/blobs/uploads/`, scope, { headers: { 'content-length': '0' } });
    const startText = await start.body.text();
    if (start.statusCode !== 202) {
      if (body instanceof Readable) body.destroy();
      throw new HttpError(`POST upload ${repo}`, start.statusCode, startText);
    }
    const location = header(start.headers, 'location');
    if (!location) throw new Error(`POST upload ${repo}: no Location`);
    const put = new URL(location, this.base);
    put.searchParams.set('digest', digest);
    const res = await this.send('PUT', put, scope, {
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
      body: body instanceof Readable || Buffer.isBuffer(body) ? body : Readable.from(body),
    });
    const text = await res.body.text();
    if (res.statusCode !== 201) throw new HttpError(`PUT blob ${repo}@${digest}`, res.statusCode, text);
  }

  /** Cross-repository mount; false when the registry opened an upload instead (which is cancelled). */
  async mount(repo: string, digest: string, from: string): Promise<boolean> {
    const scope = `repository:${repo}:pull,push repository:${from}:pull`;
    const res = await this.send('POST', `/v2/${repo}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`, scope, {
      headers: { 'content-length': '0' },
    });
    const text = await res.body.text();
    if (res.statusCode === 201) return true;
    if (res.statusCode === 202) {
      const location = header(res.headers, 'location');
      if (location) await (await this.send('DELETE', new URL(location, this.base), scope)).body.dump();
      return false;
    }
    throw new HttpError(`mount ${digest} into ${repo}`, res.statusCode, text);
  }

  async putManifest(repo: string, ref: string, bytes: Buffer, mediaType: string): Promise<string> {
    const res = await this.send('PUT', `/v2/${repo}/manifests/${ref}`, `repository:${repo}:pull,push`, {
      headers: { 'content-type': mediaType, 'content-length': String(bytes.length) },
      body: bytes,
    });
    const text = await res.body.text();
    if (res.statusCode !== 201) throw new HttpError(`PUT manifest ${repo}:${ref}`, res.statusCode, text);
    return header(res.headers, 'docker-content-digest') ?? sha256(bytes);
  }

  async getManifest(repo: string, ref: string): Promise<{ bytes: Buffer; mediaType: string; digest: string } | null> {
    const res = await this.send('GET', `/v2/${repo}/manifests/${ref}`, `repository:${repo}:pull`, { headers: { accept: ACCEPT_MANIFESTS } });
    const bytes = Buffer.from(await res.body.arrayBuffer());
    if (res.statusCode === 404) return null;
    if (res.statusCode !== 200) throw new HttpError(`GET manifest ${repo}:${ref}`, res.statusCode, bytes.toString());
    return { bytes, mediaType: header(res.headers, 'content-type') ?? '', digest: header(res.headers, 'docker-content-digest') ?? sha256(bytes) };
  }

  /** HEAD of a manifest: its digest, or null when the tag is absent. */
  async headManifest(repo: string, ref: string): Promise<string | null> {
    const res = await this.send('HEAD', `/v2/${repo}/manifests/${ref}`, `repository:${repo}:pull`, { headers: { accept: ACCEPT_MANIFESTS } });
    await res.body.dump();
    if (res.statusCode === 404) return null;
    if (res.statusCode !== 200) throw new HttpError(`HEAD manifest ${repo}:${ref}`, res.statusCode, '');
    return header(res.headers, 'docker-content-digest') ?? null;
  }

  async tags(repo: string): Promise<string[]> {
    const res = await this.send('GET', `/v2/${repo}/tags/list?n=1000`, `repository:${repo}:pull`);
    const text = await res.body.text();
    if (res.statusCode === 404) return [];
    if (res.statusCode !== 200) throw new HttpError(`tags of ${repo}`, res.statusCode, text);
    return (JSON.parse(text) as { tags?: string[] | null }).tags ?? [];
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }
}

export function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Runs `fn` over `items` with at most `limit` in flight; rejects on the first failure. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

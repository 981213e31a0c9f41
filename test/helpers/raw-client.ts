// A deliberately small, independent registry client to push test content and to read results back.
//
// The client here must NOT reuse Ferry's registry client: a test that seeds a registry with Ferry's
// code and then checks it with Ferry's code would pass even if both sides shared a bug. It speaks
// just enough of the Distribution API (monolithic uploads, manifests, tags, catalog) and of the auth
// challenges (Basic; Bearer via the realm) to set up and assert, nothing more.
import { Agent, request, type Dispatcher } from 'undici';
import { ACCEPT_ALL_MANIFESTS, type TestContent, sha256 } from './images.js';
import { HELPERS_USER_AGENT } from './token-issuer.js';

/** Where to talk to, and as whom. A TestRegistry fits (its first user's credentials). */
export interface RegistryEndpoint {
  url: string;
  username?: string;
  password?: string;
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** The URL that answered (after redirects, when followed). */
  url: string;
}

export interface RawRequestOptions {
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** The token scope this request needs (asked for together with the challenge's scope). */
  scope?: string;
  /** Follow 3xx redirects (dropping Authorization when the host changes). Default false. */
  followRedirects?: boolean;
}

// One connection pool for the helpers, separate from whatever dispatcher Ferry's code installs
// globally; short keep-alive so stopped registries do not leave half-dead sockets around.
const dispatcher: Dispatcher = new Agent({ keepAliveTimeout: 1000, keepAliveMaxTimeout: 2000, connect: { timeout: 5000 } });

/**
 * A tiny Distribution client: remembers the auth scheme, caches Bearer tokens per scope, and retries
 * a request once after a 401 challenge.
 */
export class RawRegistryClient {
  private readonly base: URL;
  private scheme: 'basic' | 'bearer' | undefined;
  private readonly tokens = new Map<string, string>();
  private readonly pending = new Map<string, Promise<string>>();
  /** How many token requests this client made (helpful when debugging token traffic). */
  tokenRequests = 0;

  constructor(readonly endpoint: RegistryEndpoint) {
    this.base = new URL(endpoint.url);
  }

  async request(method: string, pathOrUrl: string, opts: RawRequestOptions = {}): Promise<RawResponse> {
    let url = new URL(pathOrUrl, this.base);
    let res = await this.send(method, url, opts, this.authFor(opts.scope));
    if (res.status === 401) {
      const auth = await this.answerChallenge(res.headers['www-authenticate'], opts.scope);
      if (auth !== undefined) res = await this.send(method, url, opts, auth);
    }
    for (let hops = 0; opts.followRedirects && hops < 5 && [301, 302, 303, 307, 308].includes(res.status); hops++) {
      const location = header(res, 'location');
      if (location === undefined) break;
      const next = new URL(location, url);
      // Never forward credentials to another host (object storage rejects or, worse, logs them).
      const sameOrigin = next.origin === this.base.origin;
      url = next;
      res = await this.send(method === 'HEAD' ? 'HEAD' : 'GET', url, { ...opts, body: undefined }, sameOrigin ? this.authFor(opts.scope) : undefined);
    }
    return res;
  }

  private authFor(scope: string | undefined): string | undefined {
    if (this.scheme === 'basic') return basicHeader(this.endpoint);
    if (this.scheme === 'bearer') {
      const token = this.tokens.get(scope ?? '') ?? this.tokens.get('');
      return token === undefined ? undefined : `Bearer ${token}`;
    }
    return undefined;
  }

  private async answerChallenge(challenge: string | string[] | undefined, scopeHint: string | undefined): Promise<string | undefined> {
    const value = Array.isArray(challenge) ? challenge.join(', ') : challenge;
    if (value === undefined) return undefined;
    const parsed = parseChallenge(value);
    if (parsed.scheme === 'basic') {
      if (this.endpoint.username === undefined) return undefined;
      this.scheme = 'basic';
      return basicHeader(this.endpoint);
    }
    if (parsed.scheme !== 'bearer' || parsed.params.realm === undefined) return undefined;
    const scopes = new Set<string>();
    if (scopeHint) scopes.add(scopeHint);
    for (const s of (parsed.params.scope ?? '').split(' ')) if (s) scopes.add(s);
    const realm = new URL(parsed.params.realm);
    if (parsed.params.service) realm.searchParams.set('service', parsed.params.service);
    for (const s of scopes) realm.searchParams.append('scope', s);
    // Parallel requests (pushImage uploads blobs concurrently) share one token request.
    const key = realm.toString();
    let pending = this.pending.get(key);
    if (pending === undefined) {
      pending = this.fetchToken(realm).finally(() => this.pending.delete(key));
      this.pending.set(key, pending);
    }
    const token = await pending;
    this.scheme = 'bearer';
    this.tokens.set(scopeHint ?? '', token);
    return `Bearer ${token}`;
  }

  private async fetchToken(realm: URL): Promise<string> {
    const headers: Record<string, string> = { 'user-agent': HELPERS_USER_AGENT };
    const basic = basicHeader(this.endpoint);
    if (basic) headers.authorization = basic;
    this.tokenRequests++;
    const res = await request(realm, { method: 'GET', headers, dispatcher });
    const body = Buffer.from(await res.body.arrayBuffer());
    if (res.statusCode !== 200) throw new Error(`token request to ${realm.origin}${realm.pathname} failed: HTTP ${res.statusCode} ${body.toString('utf8').slice(0, 300)}`);
    const json = JSON.parse(body.toString('utf8')) as { token?: string; access_token?: string };
    const token = json.token ?? json.access_token;
    if (!token) throw new Error('token response carried neither token nor access_token');
    return token;
  }

  private async send(method: string, url: URL, opts: RawRequestOptions, authorization: string | undefined): Promise<RawResponse> {
    const headers: Record<string, string> = { 'user-agent': HELPERS_USER_AGENT, ...opts.headers };
    if (authorization) headers.authorization = authorization;
    const res = await request(url, { method: method as Dispatcher.HttpMethod, headers, body: opts.body, dispatcher });
    const body = method === 'HEAD' ? (await res.body.dump(), Buffer.alloc(0)) : Buffer.from(await res.body.arrayBuffer());
    return { status: res.statusCode, headers: res.headers, body, url: url.toString() };
  }
}

// Clients are cached per endpoint + credentials so token requests made by the helpers stay few
// (tests asserting a token issuer's traffic can also filter them out via HELPERS_USER_AGENT).
const clients = new Map<string, RawRegistryClient>();

/** The cached raw client for an endpoint. */
export function rawClient(reg: RegistryEndpoint): RawRegistryClient {
  const key = `${reg.url}\0${reg.username ?? ''}\0${reg.password ?? ''}`;
  let c = clients.get(key);
  if (!c) {
    c = new RawRegistryClient({ url: reg.url, username: reg.username, password: reg.password });
    clients.set(key, c);
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
// Push

export class RegistryHttpError extends Error {
  constructor(
    readonly operation: string,
    readonly status: number,
    readonly body: string,
  ) {
    super(`${operation}: HTTP ${status} ${body.slice(0, 500)}`);
    this.name = 'RegistryHttpError';
  }
}

const pullScope = (repo: string): string => `repository:${repo}:pull`;
const pushScope = (repo: string): string => `repository:${repo}:pull,push`;

/** Uploads one blob unless the repository already has it (HEAD), with POST + monolithic PUT. Returns true if uploaded. */
export async function pushBlob(reg: RegistryEndpoint, repo: string, bytes: Buffer, digest: string = sha256(bytes)): Promise<boolean> {
  const c = rawClient(reg);
  const scope = pushScope(repo);
  const head = await c.request('HEAD', `/v2/${repo}/blobs/${digest}`, { scope });
  if (head.status === 200) return false;
  const start = await c.request('POST', `/v2/${repo}/blobs/uploads/`, { scope, headers: { 'content-length': '0' } });
  if (start.status !== 202) throw new RegistryHttpError(`start upload of ${digest} to ${repo}`, start.status, start.body.toString('utf8'));
  const location = header(start, 'location');
  if (!location) throw new Error(`upload start for ${repo} returned no Location`);
  // Location may be relative and may carry its own query (_state): merge digest into it.
  const put = new URL(location, reg.url);
  put.searchParams.set('digest', digest);
  const done = await c.request('PUT', put.toString(), { scope, body: bytes, headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes.length) } });
  if (done.status !== 201) throw new RegistryHttpError(`upload ${digest} to ${repo}`, done.status, done.body.toString('utf8'));
  return true;
}

/** PUTs manifest bytes; returns the Docker-Content-Digest the registry answered. */
export async function pushManifest(reg: RegistryEndpoint, repo: string, ref: string, bytes: Buffer, mediaType: string): Promise<string> {
  const res = await rawClient(reg).request('PUT', `/v2/${repo}/manifests/${ref}`, { scope: pushScope(repo), body: bytes, headers: { 'content-type': mediaType } });
  if (res.status !== 201) throw new RegistryHttpError(`push manifest ${repo}:${ref}`, res.status, res.body.toString('utf8'));
  return header(res, 'docker-content-digest') ?? sha256(bytes);
}

/**
 * Pushes content: blobs (skipping those present), an index's children by digest, then the manifest
 * under `ref` (a tag or a digest; default: the content's digest). Throws if the registry computes a
 * different digest than we did.
 */
export async function pushImage(reg: RegistryEndpoint, repo: string, ref: string | undefined, content: TestContent): Promise<{ digest: string }> {
  if (content.kind === 'index') {
    for (const child of content.children) await pushImage(reg, repo, undefined, child);
  } else {
    // A handful of small blobs: in parallel, a fraction of the wall-clock of a serial loop.
    const blobs = content.kind === 'image' ? [content.config, ...content.layers] : content.layers;
    const unique = new Map(blobs.map((b) => [b.digest, b.bytes]));
    await Promise.all([...unique].map(([digest, bytes]) => pushBlob(reg, repo, bytes, digest)));
  }
  const digest = await pushManifest(reg, repo, ref ?? content.digest, content.manifest, content.mediaType);
  if (digest !== content.digest) throw new Error(`registry computed ${digest} for ${repo}:${ref ?? content.digest}, expected ${content.digest}`);
  return { digest };
}

// ---------------------------------------------------------------------------------------------
// Read helpers for assertions

export interface FetchedManifest {
  bytes: Buffer;
  /** Docker-Content-Digest (or sha256 of the bytes when the header is missing). */
  digest: string;
  mediaType: string;
}

/** GET a manifest (tag or digest); null on 404. */
export async function getManifest(reg: RegistryEndpoint, repo: string, ref: string, accept: string = ACCEPT_ALL_MANIFESTS): Promise<FetchedManifest | null> {
  const res = await rawClient(reg).request('GET', `/v2/${repo}/manifests/${ref}`, { scope: pullScope(repo), headers: { accept } });
  if (res.status === 404) return null;
  if (res.status !== 200) throw new RegistryHttpError(`get manifest ${repo}:${ref}`, res.status, res.body.toString('utf8'));
  return { bytes: res.body, digest: header(res, 'docker-content-digest') ?? sha256(res.body), mediaType: header(res, 'content-type') ?? '' };
}

/** HEAD a manifest; null on 404. */
export async function headManifest(reg: RegistryEndpoint, repo: string, ref: string): Promise<{ digest: string; mediaType: string; size: number } | null> {
  const res = await rawClient(reg).request('HEAD', `/v2/${repo}/manifests/${ref}`, { scope: pullScope(repo), headers: { accept: ACCEPT_ALL_MANIFESTS } });
  if (res.status === 404) return null;
  if (res.status !== 200) throw new RegistryHttpError(`head manifest ${repo}:${ref}`, res.status, '');
  return { digest: header(res, 'docker-content-digest') ?? '', mediaType: header(res, 'content-type') ?? '', size: Number(header(res, 'content-length') ?? -1) };
}

/** Tags of a repository, all pages; [] when the repository does not exist. */
export async function listTags(reg: RegistryEndpoint, repo: string): Promise<string[]> {
  const tags: string[] = [];
  let next: string | undefined = `/v2/${repo}/tags/list`;
  while (next !== undefined) {
    const res = await rawClient(reg).request('GET', next, { scope: pullScope(repo) });
    if (res.status === 404) return [];
    if (res.status !== 200) throw new RegistryHttpError(`list tags of ${repo}`, res.status, res.body.toString('utf8'));
    tags.push(...((JSON.parse(res.body.toString('utf8')) as { tags?: string[] | null }).tags ?? []));
    next = nextLink(res);
  }
  return tags;
}

/** Repositories in the registry (/v2/_catalog), all pages. */
export async function catalog(reg: RegistryEndpoint): Promise<string[]> {
  const repos: string[] = [];
  let next: string | undefined = '/v2/_catalog?n=1000';
  while (next !== undefined) {
    const res = await rawClient(reg).request('GET', next, { scope: 'registry:catalog:*' });
    if (res.status !== 200) throw new RegistryHttpError('catalog', res.status, res.body.toString('utf8'));
    repos.push(...((JSON.parse(res.body.toString('utf8')) as { repositories?: string[] | null }).repositories ?? []));
    next = nextLink(res);
  }
  return repos;
}

/** Does the repository have this blob? */
export async function headBlob(reg: RegistryEndpoint, repo: string, digest: string): Promise<boolean> {
  const res = await rawClient(reg).request('HEAD', `/v2/${repo}/blobs/${digest}`, { scope: pullScope(repo), followRedirects: true });
  if (res.status === 200) return true;
  if (res.status === 404) return false;
  throw new RegistryHttpError(`head blob ${repo}@${digest}`, res.status, '');
}

/** A blob's bytes (following redirects); null on 404. Does not verify the digest: tests do. */
export async function getBlob(reg: RegistryEndpoint, repo: string, digest: string): Promise<Buffer | null> {
  const res = await rawClient(reg).request('GET', `/v2/${repo}/blobs/${digest}`, { scope: pullScope(repo), followRedirects: true });
  if (res.status === 404) return null;
  if (res.status !== 200) throw new RegistryHttpError(`get blob ${repo}@${digest}`, res.status, res.body.toString('utf8'));
  return res.body;
}

/** DELETE a manifest by digest; false when it did not exist. */
export async function deleteManifest(reg: RegistryEndpoint, repo: string, digest: string): Promise<boolean> {
  const res = await rawClient(reg).request('DELETE', `/v2/${repo}/manifests/${digest}`, { scope: `repository:${repo}:delete` });
  if (res.status === 202) return true;
  if (res.status === 404) return false;
  throw new RegistryHttpError(`delete ${repo}@${digest}`, res.status, res.body.toString('utf8'));
}

// ---------------------------------------------------------------------------------------------
// small utilities

export function header(res: { headers: Record<string, string | string[] | undefined> }, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

function nextLink(res: RawResponse): string | undefined {
  const link = header(res, 'link');
  const m = link ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link) : null;
  return m?.[1];
}

function basicHeader(e: RegistryEndpoint): string | undefined {
  if (e.username === undefined) return undefined;
  return `Basic ${Buffer.from(`${e.username}:${e.password ?? ''}`).toString('base64')}`;
}

/** Parses one WWW-Authenticate challenge: `Bearer realm="...",service="...",scope="..."`. */
export function parseChallenge(value: string): { scheme: string; params: Record<string, string> } {
  const m = /^\s*(\S+)\s*(.*)$/s.exec(value);
  const scheme = (m?.[1] ?? '').toLowerCase();
  const rest = m?.[2] ?? '';
  const params: Record<string, string> = {};
  const re = /([a-zA-Z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/g;
  for (let p = re.exec(rest); p !== null; p = re.exec(rest)) {
    params[(p[1] ?? '').toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '');
  }
  return { scheme, params };
}

// Registry authentication by challenge: anonymous until a 401 names a scheme, then Basic or a Bearer
// token from the registry's token service (distribution docs/spec/auth/token.md). Tokens are cached
// per scope set until shortly before they expire, in a bounded LRU (a daemon keeps its engines for
// days); concurrent requests for the same scopes share one token fetch.
//
// Origins: the registry's credentials (Basic, or the Bearer token) go to the registry's origin only;
// the Basic credentials of a token request go to the realm's origin only. A realm is accepted only
// from a 401 of the registry's own origin, must be https for an https registry unless `insecure`, and
// is refused on link-local and cloud metadata addresses (a hostile answer must not make Ferry send
// the password to 169.254.169.254).
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import { type Credentials, basicAuthorization, basicAuthorizer } from '../http/auth.js';
import { readBodyText } from '../http/body.js';
import type { Transport } from '../http/transport.js';
import { type Authorizer, type HttpResponse, headerValue } from '../http/types.js';
import { RegistryError, TokenRefusedError, UntrustedUrlError, parseErrorBody } from './errors.js';

export type { Credentials } from '../http/auth.js';

/**
 * Supplies credentials on demand, so cloud providers can hand out short-lived tokens and refresh them.
 * `invalidate`, when present, is called when the registry or its token service refused what it gave
 * (a revoked temporary token): the next call must fetch fresh credentials.
 */
export type CredentialSource = (() => Promise<Credentials | undefined>) & { invalidate?: () => void };

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses `WWW-Authenticate: Bearer realm="…",service="…",scope="a b"` (quoted values may hold commas). */
export function parseChallenge(header: string): Challenge | undefined {
  const m = /^\s*([A-Za-z][A-Za-z0-9_-]*)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?\s*/g;
  let p: RegExpExecArray | null;
  while ((p = re.exec(m[2]!)) !== null) {
    if (p[0] === '') break;
    params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '');
  }
  return { scheme: m[1]!.toLowerCase(), params };
}

export function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}
export function pushScope(repository: string): string {
  return `repository:${repository}:pull,push`;
}
export const CATALOG_SCOPE = 'registry:catalog:*';

/** Host names of cloud instance-metadata services (their addresses are link-local or listed below). */
const METADATA_HOSTS = new Set(['metadata', 'metadata.google.internal', 'metadata.goog', 'metadata.tencentyun.com', 'instance-data', 'instance-data.ec2.internal']);
/** Metadata addresses outside the link-local ranges: Alibaba Cloud, AWS over IPv6. */
const METADATA_ADDRESSES = new Set(['100.100.100.200', 'fd00:ec2::254']);

/** True for link-local addresses (169.254/16, fe80::/10, also IPv4-mapped) and cloud metadata endpoints. */
export function isLinkLocalOrMetadata(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase().replace(/\.$/, '');
  if (METADATA_HOSTS.has(host) || METADATA_ADDRESSES.has(host)) return true;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(host)?.[1] ?? /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(host)?.slice(1);
  const v4 = typeof mapped === 'string' ? mapped : Array.isArray(mapped) ? hexPairToV4(mapped[0]!, mapped[1]!) : isIP(host) === 4 ? host : undefined;
  if (v4) return v4.startsWith('169.254.') || METADATA_ADDRESSES.has(v4);
  if (isIP(host) === 6) return /^fe[89ab][0-9a-f]?:/.test(host);
  return false;
}

function hexPairToV4(a: string, b: string): string {
  const x = parseInt(a, 16);
  const y = parseInt(b, 16);
  return `${x >> 8}.${x & 255}.${y >> 8}.${y & 255}`;
}

/** Checks a realm named by a 401 of the registry: the URL to ask for tokens, or an UntrustedUrlError. */
export function checkRealm(realm: string, registry: URL, answeredBy: URL, o: { registry: string; insecure?: boolean | undefined }): URL {
  if (answeredBy.origin !== registry.origin) {
    throw new UntrustedUrlError(`a token realm named by ${answeredBy.origin} (not the registry's origin ${registry.origin}) is ignored`, { registry: o.registry, status: 401 });
  }
  let url: URL;
  try {
    url = new URL(realm);
  } catch {
    throw new UntrustedUrlError(`the registry names an unusable token realm "${realm.slice(0, 200)}"`, { registry: o.registry, status: 401 });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new UntrustedUrlError(`the registry names a token realm with scheme ${url.protocol}`, { registry: o.registry, status: 401 });
  }
  if (registry.protocol === 'https:' && url.protocol !== 'https:' && !o.insecure) {
    throw new UntrustedUrlError(`the registry is https but names an http token realm (${url.origin}); the password would travel in clear (set insecure: true to allow it)`, {
      registry: o.registry,
      status: 401,
    });
  }
  if (isLinkLocalOrMetadata(url.hostname)) {
    throw new UntrustedUrlError(`the registry names a token realm on a link-local or cloud metadata address (${url.host}); refused`, { registry: o.registry, status: 401 });
  }
  return url;
}

interface CachedToken {
  header: string;
  expiresAt: number;
}

/**
 * Token cache size (scope sets): a run works through repositories a few at a time (artifactConcurrency
 * artifacts in flight, a mount's scope naming two repositories), so 128 is its working set many times
 * over; bounded for a daemon running for days. Not more: a registry's JWT is ~2 KB, and 512 of them per
 * registry made a large catalog's plan hold 2 MB of tokens for repositories it was done with.
 */
export const MAX_CACHED_TOKENS = 128;

export interface AuthenticatorOptions {
  registry: string;
  /** The registry's base URL: its origin is the only one that gets the registry's credentials. */
  baseUrl: URL;
  transport: Transport;
  credentials: CredentialSource;
  insecure?: boolean | undefined;
  logger?: Logger | undefined;
  maxCachedTokens?: number | undefined;
}

export class Authenticator {
  private scheme: 'none' | 'basic' | 'bearer' | undefined;
  private realm: URL | undefined;
  private service: string | undefined;
  /** LRU: Map iteration order is insertion order; a hit is moved to the end. */
  private readonly tokens = new Map<string, CachedToken>();
  private readonly inflight = new Map<string, Promise<CachedToken>>();
  private readonly maxTokens: number;
  readonly origin: string;

  constructor(private readonly o: AuthenticatorOptions) {
    this.origin = o.baseUrl.origin;
    this.maxTokens = o.maxCachedTokens ?? MAX_CACHED_TOKENS;
  }

  /** Cached tokens right now (for tests and metrics). */
  get cachedTokens(): number {
    return this.tokens.size;
  }

  /** Forgets every token (e.g. at the start of a daemon run); the challenge scheme is kept. */
  clearTokens(): void {
    this.tokens.clear();
  }

  /** The Authorizer of requests needing these scopes; it may add scopes named by a challenge. */
  forScopes(requested: string[]): Authorizer {
    const scopes = [...requested];
    return {
      origin: this.origin,
      authorize: async () => {
        const header = await this.header(scopes);
        return header ? { authorization: header } : undefined;
      },
      onUnauthorized: (res, _req, sent) => this.onUnauthorized(res, scopes, sent?.authorization),
    };
  }

  /** The Authorization header to send for these scopes, or undefined while no challenge has been seen. */
  async header(scopes: string[]): Promise<string | undefined> {
    if (this.scheme === 'basic') {
      const creds = await this.o.credentials();
      return creds ? basicAuthorization(creds) : undefined;
    }
    if (this.scheme === 'bearer') return (await this.token(scopes)).header;
    return undefined;
  }

  /**
   * Handles a 401 of the registry's origin. Returns true when the request should be repeated with a
   * fresh header (first challenge seen, a cached token was refused and has been dropped, or refused
   * Basic credentials were replaced by fresh ones).
   */
  async onUnauthorized(res: HttpResponse, scopes: string[], sentHeader: string | undefined): Promise<boolean> {
    const wwwAuthenticate = headerValue(res.headers, 'www-authenticate');
    const challenge = wwwAuthenticate ? parseChallenge(wwwAuthenticate) : undefined;
    if (!challenge) {
      // A 401 without a challenge (some gateways drop it) refusing a token we sent: the same as a
      // challenge naming the known realm.
      if (this.scheme !== 'bearer' || !sentHeader) return false;
      const key = scopeKey(scopes);
      if (this.tokens.get(key)?.header === sentHeader) this.tokens.delete(key);
      return true;
    }
    if (challenge.scheme === 'basic') {
      if (this.scheme === 'basic' && sentHeader) {
        // Credentials refused: a source of short-lived credentials may hold a revoked one.
        if (!this.o.credentials.invalidate) return false;
        this.o.credentials.invalidate();
        const fresh = await this.o.credentials();
        return fresh !== undefined && basicAuthorization(fresh) !== sentHeader;
      }
      this.scheme = 'basic';
      return (await this.o.credentials()) !== undefined;
    }
    if (challenge.scheme === 'bearer') {
      const realm = challenge.params.realm;
      if (!realm) return false;
      const url = checkRealm(realm, this.o.baseUrl, res.url, { registry: this.o.registry, insecure: this.o.insecure });
      if (this.realm && this.realm.href !== url.href) this.tokens.clear(); // tokens of another realm are worthless here
      this.scheme = 'bearer';
      this.realm = url;
      this.service = challenge.params.service;
      // The challenge's scope is what this request needs; ask for it together with ours.
      const extra = challenge.params.scope ? challenge.params.scope.split(' ').filter(Boolean) : [];
      const key = scopeKey([...scopes, ...extra]);
      const cached = this.tokens.get(key);
      if (cached && cached.header === sentHeader) {
        // The registry refused a token we still considered valid (revoked, clock skew, expired early):
        // drop it and fetch a new one, once.
        this.tokens.delete(key);
        this.o.logger?.debug({ registry: this.o.registry }, 'token refused, re-authenticating');
      }
      for (const s of extra) if (!scopes.includes(s)) scopes.push(s);
      return true;
    }
    return false;
  }

  private async token(scopes: string[]): Promise<CachedToken> {
    const key = scopeKey(scopes);
    const cached = this.tokens.get(key);
    if (cached && cached.expiresAt > Date.now()) {
      this.tokens.delete(key);
      this.tokens.set(key, cached);
      return cached;
    }
    let pending = this.inflight.get(key);
    if (!pending) {
      pending = this.fetchToken(key.split(' ').filter(Boolean)).finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    const token = await pending;
    this.remember(key, token);
    return token;
  }

  private remember(key: string, token: CachedToken): void {
    this.tokens.delete(key);
    this.tokens.set(key, token);
    const now = Date.now();
    for (const [k, t] of this.tokens) if (t.expiresAt <= now) this.tokens.delete(k);
    // Least recently used first.
    for (const k of this.tokens.keys()) {
      if (this.tokens.size <= this.maxTokens) break;
      this.tokens.delete(k);
    }
  }

  private async fetchToken(scopes: string[]): Promise<CachedToken> {
    try {
      return await this.requestToken(scopes);
    } catch (err) {
      // A source of short-lived credentials (TCR's temporary instance tokens) may hand out a revoked
      // one: drop it and ask once more with fresh credentials.
      if (!(err instanceof TokenRefusedError) || !this.o.credentials.invalidate) throw err;
      this.o.credentials.invalidate();
      this.o.logger?.debug({ registry: this.o.registry }, 'token service refused the credentials, fetching fresh ones');
      return this.requestToken(scopes);
    }
  }

  private async requestToken(scopes: string[]): Promise<CachedToken> {
    const url = new URL(this.realm!);
    if (this.service) url.searchParams.set('service', this.service);
    for (const s of scopes) url.searchParams.append('scope', s);
    const creds = await this.o.credentials();
    const res = await this.o.transport.send({
      method: 'GET',
      url,
      kind: 'token',
      headers: { accept: 'application/json' },
      // The registry's credentials go to the realm's origin, for this request only; never followed elsewhere.
      auth: creds ? basicAuthorizer(url.origin, creds) : undefined,
      followRedirects: false,
    });
    const text = await readBodyText(res, 1024 * 1024, { registry: this.o.registry, what: 'token answer' });
    if (res.statusCode === 401 || res.statusCode === 403) {
      const { code, message } = parseErrorBody(text);
      throw new TokenRefusedError(creds ? 'the token service refused the credentials' : 'the registry requires credentials and none are configured', {
        registry: this.o.registry,
        status: res.statusCode,
        code,
        detail: message,
      });
    }
    if (res.statusCode !== 200) {
      const { code, message } = parseErrorBody(text);
      throw new RegistryError(`token service ${url.origin}${url.pathname} failed`, { registry: this.o.registry, status: res.statusCode, code, detail: message });
    }
    let body: { token?: string; access_token?: string; expires_in?: number; issued_at?: string };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      throw new RegistryError('token service answered with invalid JSON', { registry: this.o.registry, status: res.statusCode });
    }
    const token = body.token ?? body.access_token;
    if (!token) throw new RegistryError('token service answered without a token', { registry: this.o.registry, status: res.statusCode });
    // The spec's default lifetime is 60 s. Refresh a little early (10% or 10 s) so a token never
    // expires between being picked and being checked by the registry.
    const lifetimeMs = (typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 60) * 1000;
    const margin = Math.min(10_000, lifetimeMs * 0.1);
    return { header: `Bearer ${token}`, expiresAt: Date.now() + lifetimeMs - margin };
  }
}

/** One cache key per set of scopes, independent of order and duplicates. */
export function scopeKey(scopes: string[]): string {
  return [...new Set(scopes)].sort().join(' ');
}

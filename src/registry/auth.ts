// Registry authentication by challenge: anonymous until a 401 names a scheme, then Basic or a Bearer
// token from the registry's token service (distribution docs/spec/auth/token.md). Tokens are cached
// per scope set until shortly before they expire; concurrent requests for the same scopes share one
// token fetch.
import type { Logger } from 'pino';
import { RegistryError, TokenRefusedError, parseErrorBody } from './errors.js';
import { type HttpTransport, readText } from './http.js';

export interface Credentials {
  username: string;
  password: string;
}

/** Supplies credentials on demand, so cloud providers can hand out short-lived tokens and refresh them. */
export type CredentialSource = () => Promise<Credentials | undefined>;

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

interface CachedToken {
  header: string;
  expiresAt: number;
}

export class Authenticator {
  private scheme: 'none' | 'basic' | 'bearer' | undefined;
  private realm: URL | undefined;
  private service: string | undefined;
  private readonly tokens = new Map<string, CachedToken>();
  private readonly inflight = new Map<string, Promise<CachedToken>>();

  constructor(
    private readonly registry: string,
    private readonly transport: HttpTransport,
    private readonly credentials: CredentialSource,
    private readonly logger?: Logger,
  ) {}

  /** The Authorization header to send for these scopes, or undefined while no challenge has been seen. */
  async header(scopes: string[]): Promise<string | undefined> {
    if (this.scheme === 'basic') return this.basicHeader();
    if (this.scheme === 'bearer') return (await this.token(scopes)).header;
    return undefined;
  }

  /**
   * Handles a 401 answer. Returns true when the request should be repeated with a fresh header
   * (first challenge seen, or a cached token was refused and has now been dropped).
   */
  async onUnauthorized(wwwAuthenticate: string | undefined, scopes: string[], sentHeader: string | undefined): Promise<boolean> {
    const challenge = wwwAuthenticate ? parseChallenge(wwwAuthenticate) : undefined;
    if (!challenge) return false;
    if (challenge.scheme === 'basic') {
      if (this.scheme === 'basic' && sentHeader) return false; // credentials refused
      this.scheme = 'basic';
      return (await this.basicHeader()) !== undefined;
    }
    if (challenge.scheme === 'bearer') {
      const realm = challenge.params.realm;
      if (!realm) return false;
      this.scheme = 'bearer';
      this.realm = new URL(realm);
      this.service = challenge.params.service;
      // The challenge's scope is what this request needs; ask for it together with ours.
      const extra = challenge.params.scope ? challenge.params.scope.split(' ').filter(Boolean) : [];
      const key = scopeKey([...scopes, ...extra]);
      const cached = this.tokens.get(key);
      if (cached && cached.header === sentHeader) {
        // The registry refused a token we still considered valid (revoked, clock skew, expired early):
        // drop it and fetch a new one, once.
        this.tokens.delete(key);
        this.logger?.debug({ registry: this.registry }, 'token refused, re-authenticating');
      }
      for (const s of extra) if (!scopes.includes(s)) scopes.push(s);
      return true;
    }
    return false;
  }

  private async basicHeader(): Promise<string | undefined> {
    const creds = await this.credentials();
    if (!creds) return undefined;
    return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
  }

  private async token(scopes: string[]): Promise<CachedToken> {
    const key = scopeKey(scopes);
    const cached = this.tokens.get(key);
    if (cached && cached.expiresAt > Date.now()) return cached;
    let pending = this.inflight.get(key);
    if (!pending) {
      pending = this.fetchToken(key.split(' ').filter(Boolean)).finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    const token = await pending;
    this.tokens.set(key, token);
    return token;
  }

  private async fetchToken(scopes: string[]): Promise<CachedToken> {
    const url = new URL(this.realm!);
    if (this.service) url.searchParams.set('service', this.service);
    for (const s of scopes) url.searchParams.append('scope', s);
    const creds = await this.credentials();
    const headers: Record<string, string> = { accept: 'application/json' };
    if (creds) headers.authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
    const res = await this.transport.send({ method: 'GET', url, headers });
    const text = await readText(res, 1024 * 1024);
    if (res.statusCode === 401 || res.statusCode === 403) {
      const { code, message } = parseErrorBody(text);
      throw new TokenRefusedError(creds ? 'the token service refused the credentials' : 'the registry requires credentials and none are configured', {
        registry: this.registry,
        status: res.statusCode,
        code,
        detail: message,
      });
    }
    if (res.statusCode !== 200) {
      const { code, message } = parseErrorBody(text);
      throw new RegistryError(`token service ${url.origin}${url.pathname} failed`, { registry: this.registry, status: res.statusCode, code, detail: message });
    }
    let body: { token?: string; access_token?: string; expires_in?: number; issued_at?: string };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      throw new RegistryError('token service answered with invalid JSON', { registry: this.registry, status: res.statusCode });
    }
    const token = body.token ?? body.access_token;
    if (!token) throw new RegistryError('token service answered without a token', { registry: this.registry, status: res.statusCode });
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

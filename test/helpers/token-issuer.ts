// A token server implementing distribution's token authentication spec
// (distribution docs/spec/auth/token.md, jwt.md, scope.md), for registries started with
// `startRegistry({ auth: 'token' })` and for unit tests of Ferry's Bearer flow.
//
// How distribution 2.8 verifies our JWTs (registry/auth/token/token.go), and why we do what we do:
//  - The JWS header carries `x5c` (the signing certificate chain, standard base64 DER). The registry
//    verifies the chain against `auth.token.rootcertbundle` with x509.Verify(ExtKeyUsageAny) and then
//    checks the signature with the leaf's public key. Our certificate is self-signed and is itself the
//    bundle, so the chain has length 1. No `kid` is needed when `x5c` is present (kid is only used to
//    look a key up in the bundle when neither x5c nor jwk is sent).
//  - Claims: `iss` must equal auth.token.issuer, `aud` must contain auth.token.service, and exp/nbf are
//    checked with a fixed 60 s leeway. The leeway means a token whose `exp` passed 59 s ago still works,
//    so to make "tokens expire quickly" observable we move `exp` back by that leeway (see
//    `compensateRegistryLeeway`); the `expires_in` we report stays the configured TTL.
//  - `access` entries are matched exactly on type and name; the action list is what the registry
//    checks (`pull`, `push`, `delete`, `*` for registry:catalog:*).
//
// The certificate is built in-process (a few lines of DER below) instead of shelling out to openssl,
// so a fresh machine needs nothing beyond Node. The RSA key and certificate are generated once per
// process and shared by every issuer (key generation is the only slow part, ~50-200 ms).
import { createHash, generateKeyPair, randomBytes, randomUUID, sign, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { LOOPBACK, listenOnFreePort } from './ports.js';

/** One resource access entry, as in the JWT `access` claim and in a scope (`type:name:actions`). */
export interface AccessEntry {
  type: string;
  name: string;
  actions: string[];
}

/**
 * A user's permissions: a list of actions granted on every resource, or a function deciding per
 * resource (e.g. pull-only on one repository to test cross-repository mounts).
 */
export type UserAccess = string[] | ((type: string, name: string) => string[]);

export interface TokenUser {
  username: string;
  password: string;
  /** Actions this user may be granted; default ['pull', 'push', 'delete', '*']. */
  access?: UserAccess;
}

export interface TokenIssuerOptions {
  /** The `service` the registry is configured with (JWT `aud`). Default 'ferry-test-registry'. */
  service?: string;
  /** JWT `iss`. Default 'ferry-test-issuer'. */
  issuer?: string;
  users?: TokenUser[];
  /** Token lifetime reported in `expires_in` and enforced by the registry. Default 300. */
  tokenTtlSeconds?: number;
  /**
   * Move `exp` back by the registry's 60 s verification leeway so the registry really refuses the
   * token `tokenTtlSeconds` after issue (default true). With it, `exp` may precede `iat` for short
   * TTLs: clients must rely on `expires_in`, as the spec says, not on decoding the JWT.
   */
  compensateRegistryLeeway?: boolean;
  /** Answer the OAuth2 `POST <realm>` (grant_type=password|refresh_token). Default false: POST gets 404, which tells clients to use GET. */
  oauthPost?: boolean;
  /** Also put `issued_at` in the response (default true); some real issuers omit it. */
  includeIssuedAt?: boolean;
}

/** One request to the token endpoint, for assertions (token caching, scopes asked for, ...). */
export interface TokenRequestRecord {
  method: string;
  /** Every scope asked for, one entry per scope (space-separated scopes in one parameter are split). */
  scopes: string[];
  /** The authenticated user; undefined for anonymous requests and failed logins. */
  user?: string;
  /** The username that was tried when authentication failed. */
  attemptedUser?: string;
  service?: string;
  grantType?: string;
  status: number;
  granted: AccessEntry[];
  /** The client's User-Agent; the test helpers' own requests carry HELPERS_USER_AGENT. */
  userAgent?: string;
  at: Date;
}

/** User-Agent of the raw client in raw-client.ts, so assertions can ignore the helpers' own traffic. */
export const HELPERS_USER_AGENT = 'ferry-test-helpers';

/** Distribution's verification leeway for exp/nbf (registry/auth/token/token.go: Leeway). */
export const REGISTRY_TOKEN_LEEWAY_SECONDS = 60;

export const DEFAULT_USER_ACCESS: readonly string[] = ['pull', 'push', 'delete', '*'];

export class TokenIssuer {
  /** Base URL of the issuer, e.g. http://127.0.0.1:41234. */
  readonly url: string;
  /** The realm to configure in the registry (`<url>/token`). */
  readonly realm: string;
  readonly service: string;
  readonly issuer: string;
  /** PEM certificate the registry must trust (`auth.token.rootcertbundle`). */
  readonly certificatePem: string;
  /** Every request to the token endpoint, oldest first. */
  readonly requests: TokenRequestRecord[] = [];
  /** Tokens handed out successfully. */
  tokensIssued = 0;
  /** Requests refused with 401 (bad credentials). */
  failures = 0;
  /** Mutable at run time: tests can shorten lifetimes half-way through. */
  tokenTtlSeconds: number;
  compensateRegistryLeeway: boolean;
  oauthPost: boolean;
  includeIssuedAt: boolean;

  private readonly users = new Map<string, TokenUser>();
  private readonly refreshTokens = new Map<string, string>();

  /** @internal use startTokenIssuer() */
  constructor(
    private readonly server: Server,
    port: number,
    private readonly keys: SigningMaterial,
    opts: TokenIssuerOptions,
  ) {
    this.url = `http://${LOOPBACK}:${port}`;
    this.realm = `${this.url}/token`;
    this.service = opts.service ?? 'ferry-test-registry';
    this.issuer = opts.issuer ?? 'ferry-test-issuer';
    this.certificatePem = keys.certificatePem;
    this.tokenTtlSeconds = opts.tokenTtlSeconds ?? 300;
    this.compensateRegistryLeeway = opts.compensateRegistryLeeway ?? true;
    this.oauthPost = opts.oauthPost ?? false;
    this.includeIssuedAt = opts.includeIssuedAt ?? true;
    this.setUsers(opts.users ?? []);
  }

  /** Replaces the user table (e.g. to revoke a user or rotate a password mid-test). */
  setUsers(users: TokenUser[]): void {
    this.users.clear();
    for (const u of users) this.users.set(u.username, u);
  }

  /** Clears the request log and counters. */
  resetStats(): void {
    this.requests.length = 0;
    this.tokensIssued = 0;
    this.failures = 0;
  }

  /** Requests that asked for a given scope (exact string match), e.g. to assert a token was cached. */
  requestsFor(scope: string): TokenRequestRecord[] {
    return this.requests.filter((r) => r.scopes.includes(scope));
  }

  /** Requests made by anything but the test helpers themselves (i.e. by the code under test). */
  clientRequests(): TokenRequestRecord[] {
    return this.requests.filter((r) => r.userAgent !== HELPERS_USER_AGENT);
  }

  /**
   * Mints a token directly (no HTTP). `user` undefined = anonymous: no access. Useful to hand a
   * client a pre-made or deliberately broken token.
   */
  mint(user: string | undefined, scopes: string[], ttlSeconds = this.tokenTtlSeconds): { token: string; granted: AccessEntry[] } {
    const account = user === undefined ? undefined : this.users.get(user);
    const granted = account ? grant(account, scopes) : [];
    const now = Math.floor(Date.now() / 1000);
    const exp = now + ttlSeconds - (this.compensateRegistryLeeway ? REGISTRY_TOKEN_LEEWAY_SECONDS : 0);
    const header = { typ: 'JWT', alg: 'RS256', x5c: [this.keys.certificateDer.toString('base64')] };
    const claims = {
      iss: this.issuer,
      sub: user ?? '',
      aud: this.service,
      exp,
      // nbf a little in the past: the registry and we share a clock, but a second boundary between
      // signing and verification must not make a fresh token "not yet valid".
      nbf: now - 1,
      iat: now,
      jti: randomUUID(),
      access: granted,
    };
    return { token: signJwt(header, claims, this.keys.privateKey), granted };
  }

  stop(): Promise<void> {
    return closeServer(this.server);
  }

  /** @internal */
  handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', this.url);
    this.currentUserAgent = req.headers['user-agent'];
    if (url.pathname !== '/token') return sendJson(res, 404, { errors: [{ code: 'NOT_FOUND', message: 'no such endpoint' }] });
    if (req.method === 'GET') return this.handleGet(req, res, url);
    if (req.method === 'POST') {
      if (!this.oauthPost) {
        req.resume();
        return sendJson(res, 404, { errors: [{ code: 'NOT_FOUND', message: 'POST not supported, use GET' }] });
      }
      const userAgent = req.headers['user-agent'];
      readBody(req)
        .then((body) => {
          this.currentUserAgent = userAgent;
          this.handlePost(res, new URLSearchParams(body.toString('utf8')));
        })
        .catch(() => res.destroy());
      return;
    }
    req.resume();
    sendJson(res, 405, { errors: [{ code: 'UNSUPPORTED', message: 'method not allowed' }] });
  }

  private currentUserAgent: string | undefined;

  private handleGet(req: IncomingMessage, res: ServerResponse, url: URL): void {
    const scopes = splitScopes(url.searchParams.getAll('scope'));
    const service = url.searchParams.get('service') ?? undefined;
    const creds = parseBasic(req.headers.authorization);
    if (creds === undefined) return this.respondToken(res, 'GET', scopes, service, undefined);
    if (!this.checkPassword(creds.username, creds.password)) {
      return this.refuse(res, 'GET', scopes, service, creds.username);
    }
    this.respondToken(res, 'GET', scopes, service, creds.username);
  }

  private handlePost(res: ServerResponse, form: URLSearchParams): void {
    const scopes = splitScopes(form.getAll('scope'));
    const service = form.get('service') ?? undefined;
    const grantType = form.get('grant_type') ?? '';
    if (grantType === 'password') {
      const username = form.get('username') ?? '';
      if (!this.checkPassword(username, form.get('password') ?? '')) return this.refuse(res, 'POST', scopes, service, username, grantType);
      return this.respondToken(res, 'POST', scopes, service, username, grantType, true);
    }
    if (grantType === 'refresh_token') {
      const user = this.refreshTokens.get(form.get('refresh_token') ?? '');
      if (user === undefined) return this.refuse(res, 'POST', scopes, service, undefined, grantType);
      return this.respondToken(res, 'POST', scopes, service, user, grantType, true);
    }
    this.record({ method: 'POST', scopes, service, grantType, status: 400, granted: [], at: new Date() });
    sendJson(res, 400, { error: 'unsupported_grant_type' });
  }

  private checkPassword(username: string, password: string): boolean {
    const user = this.users.get(username);
    return user !== undefined && user.password === password;
  }

  private refuse(res: ServerResponse, method: string, scopes: string[], service: string | undefined, attemptedUser?: string, grantType?: string): void {
    this.failures++;
    this.record({ method, scopes, service, attemptedUser, grantType, status: 401, granted: [], at: new Date() });
    res.setHeader('WWW-Authenticate', `Basic realm="${this.realm}"`);
    sendJson(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required', detail: null }] });
  }

  private respondToken(res: ServerResponse, method: string, scopes: string[], service: string | undefined, user: string | undefined, grantType?: string, oauth = false): void {
    const { token, granted } = this.mint(user, scopes);
    this.tokensIssued++;
    this.record({ method, scopes, user, service, grantType, status: 200, granted, at: new Date() });
    const body: Record<string, unknown> = { token, access_token: token, expires_in: this.tokenTtlSeconds };
    if (this.includeIssuedAt) body.issued_at = new Date().toISOString();
    if (oauth && user !== undefined) {
      const refresh = randomBytes(16).toString('hex');
      this.refreshTokens.set(refresh, user);
      body.refresh_token = refresh;
      body.scope = scopes.join(' ');
    }
    sendJson(res, 200, body);
  }

  private record(r: TokenRequestRecord): void {
    r.userAgent = this.currentUserAgent;
    // Drop undefined keys so `toEqual({scopes, user})`-style assertions stay simple.
    const clean = Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined)) as unknown as TokenRequestRecord;
    this.requests.push(clean);
  }
}

/** Starts a token issuer on a free loopback port. */
export async function startTokenIssuer(opts: TokenIssuerOptions = {}): Promise<TokenIssuer> {
  const keys = await signingMaterial();
  let issuer: TokenIssuer | undefined;
  const server = createServer((req, res) => {
    if (issuer === undefined) {
      res.statusCode = 503;
      res.end();
      return;
    }
    issuer.handle(req, res);
  });
  // Keep-alive connections from clients must not hold stop() for the default 5 s.
  server.keepAliveTimeout = 1000;
  const port = await listenOnFreePort(server);
  issuer = new TokenIssuer(server, port, keys, opts);
  return issuer;
}

/** Parses `type:name:actions` scopes; the name may itself contain ':' (a registry host:port). */
export function parseScope(scope: string): AccessEntry | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first < 0 || last === first) return undefined;
  const actions = scope.slice(last + 1).split(',').filter((a) => a !== '');
  return { type: scope.slice(0, first), name: scope.slice(first + 1, last), actions };
}

/** Decodes a JWT without verifying it (for assertions on claims). */
export function decodeJwt(token: string): { header: Record<string, unknown>; claims: Record<string, unknown> } {
  const [h, c] = token.split('.');
  if (h === undefined || c === undefined) throw new Error('not a JWT');
  return {
    header: JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as Record<string, unknown>,
    claims: JSON.parse(Buffer.from(c, 'base64url').toString('utf8')) as Record<string, unknown>,
  };
}

// ---------------------------------------------------------------------------------------------
// Granting

function grant(user: TokenUser, scopes: string[]): AccessEntry[] {
  const out: AccessEntry[] = [];
  for (const scope of scopes) {
    const entry = parseScope(scope);
    if (entry === undefined) continue;
    const allowed = typeof user.access === 'function' ? user.access(entry.type, entry.name) : user.access ?? DEFAULT_USER_ACCESS;
    // '*' in a request is only granted when the user holds '*' itself (registry:catalog:* and
    // repository:x:* both mean "everything" to distribution).
    const actions = entry.actions.filter((a) => allowed.includes(a));
    if (actions.length === 0) continue;
    const existing = out.find((e) => e.type === entry.type && e.name === entry.name);
    if (existing) {
      for (const a of actions) if (!existing.actions.includes(a)) existing.actions.push(a);
    } else {
      out.push({ type: entry.type, name: entry.name, actions });
    }
  }
  return out;
}

function splitScopes(values: string[]): string[] {
  return values.flatMap((v) => v.split(' ')).filter((s) => s !== '');
}

function parseBasic(header: string | undefined): { username: string; password: string } | undefined {
  if (header === undefined) return undefined;
  const m = /^Basic\s+(.+)$/i.exec(header.trim());
  if (m?.[1] === undefined) return undefined;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return { username: decoded, password: '' };
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

// ---------------------------------------------------------------------------------------------
// JWT / keys / self-signed certificate

interface SigningMaterial {
  privateKey: KeyObject;
  certificateDer: Buffer;
  certificatePem: string;
}

let material: Promise<SigningMaterial> | undefined;

/** The process-wide RSA key + self-signed certificate (generated on first use). */
export function signingMaterial(): Promise<SigningMaterial> {
  material ??= createSigningMaterial().catch((err: unknown) => {
    material = undefined;
    throw err;
  });
  return material;
}

async function createSigningMaterial(): Promise<SigningMaterial> {
  const { privateKey, publicKey } = await new Promise<{ privateKey: KeyObject; publicKey: KeyObject }>((resolve, reject) => {
    generateKeyPair('rsa', { modulusLength: 2048, publicExponent: 0x10001 }, (err, pub, priv) => (err ? reject(err) : resolve({ privateKey: priv, publicKey: pub })));
  });
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const certificateDer = selfSignedCertificate(spki, privateKey, 'ferry-test-token-issuer');
  const b64 = certificateDer.toString('base64').replace(/.{1,64}/g, '$&\n');
  return { privateKey, certificateDer, certificatePem: `-----BEGIN CERTIFICATE-----\n${b64}-----END CERTIFICATE-----\n` };
}

function signJwt(header: object, claims: object, key: KeyObject): string {
  const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  // RS256 = RSASSA-PKCS1-v1_5 with SHA-256, node's default padding for RSA keys.
  const signature = sign('sha256', Buffer.from(signingInput), key);
  return `${signingInput}.${signature.toString('base64url')}`;
}

function b64url(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64url');
}

// Minimal DER encoder: just what an X.509 v3 certificate needs.
function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}
function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
}
const seq = (...c: Buffer[]): Buffer => tlv(0x30, ...c);
const set = (...c: Buffer[]): Buffer => tlv(0x31, ...c);
function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  const out: number[] = [40 * (arcs[0] ?? 0) + (arcs[1] ?? 0)];
  for (const arc of arcs.slice(2)) {
    const chunk: number[] = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}
function utcTime(d: Date): Buffer {
  // UTCTime YYMMDDHHMMSSZ (valid until 2049; Go rejects GeneralizedTime for dates before 2050).
  const p = (n: number): string => String(n).padStart(2, '0');
  const s = `${p(d.getUTCFullYear() % 100)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
  return tlv(0x17, Buffer.from(s, 'ascii'));
}
function name(cn: string): Buffer {
  return seq(set(seq(oid('2.5.4.3'), tlv(0x0c, Buffer.from(cn, 'utf8')))));
}

function selfSignedCertificate(spki: Buffer, key: KeyObject, commonName: string): Buffer {
  const sha256WithRSA = seq(oid('1.2.840.113549.1.1.11'), Buffer.from([0x05, 0x00]));
  // Positive, non-zero 64-bit serial (top bit cleared so DER does not read it as negative).
  const serial = randomBytes(8);
  serial[0] = ((serial[0] ?? 0) & 0x7f) | 0x01;
  const now = Date.now();
  const extensions = tlv(
    0xa3,
    seq(
      // basicConstraints: CA:TRUE (critical) — it is its own root in the registry's bundle.
      seq(oid('2.5.29.19'), Buffer.from([0x01, 0x01, 0xff]), tlv(0x04, seq(Buffer.from([0x01, 0x01, 0xff])))),
      // keyUsage: digitalSignature + keyCertSign (critical).
      seq(oid('2.5.29.15'), Buffer.from([0x01, 0x01, 0xff]), tlv(0x04, Buffer.from([0x03, 0x02, 0x02, 0x84]))),
      // subjectKeyIdentifier: Go does not require it, but tools that inspect the bundle like it.
      seq(oid('2.5.29.14'), tlv(0x04, tlv(0x04, createHash('sha1').update(spki).digest()))),
    ),
  );
  const tbs = seq(
    tlv(0xa0, tlv(0x02, Buffer.from([0x02]))), // version v3
    tlv(0x02, serial),
    sha256WithRSA,
    name(commonName),
    // Valid from an hour ago (clock skew) for 30 days: far beyond any test process's life.
    seq(utcTime(new Date(now - 3600_000)), utcTime(new Date(now + 30 * 86400_000))),
    name(commonName),
    spki,
    extensions,
  );
  const signature = sign('sha256', tbs, key);
  return seq(tbs, sha256WithRSA, tlv(0x03, Buffer.from([0x00]), signature));
}

// ---------------------------------------------------------------------------------------------
// small HTTP utilities shared with other helpers

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const bytes = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': bytes.length });
  res.end(bytes);
}

export function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Closes an HTTP server, dropping idle and active keep-alive connections so it does not linger. */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

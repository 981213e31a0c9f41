// Stub cloud management APIs for tests: Tencent TCR (TC3-HMAC-SHA256) and Huawei/OTC SWR (AK/SK
// "SDK-HMAC-SHA256", plus the registry-host "dockyard" endpoints with Basic auth).
//
// They verify requests the way the clouds do, from the bytes on the wire and independently of
// src/providers (own canonicalization code here): the signature is recomputed with the secret the stub
// knows, the timestamp is checked against the stub's clock (TCR 5 minutes, SWR 15 minutes), and a
// failure answers in the vendor's format. They keep state (namespaces, quota, reserved or foreign
// names, issued tokens) and log every request for assertions. All listen on 127.0.0.1, port 0.
import { createHash, createHmac, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { listenOnFreePort, LOOPBACK } from './ports.js';

export interface StubRequestLog {
  method: string;
  path: string;
  /** TCR: X-TC-Action; SWR: "<METHOD> <path template>". */
  action: string;
  /** Parsed JSON body, if any. */
  params: Record<string, unknown> | undefined;
  /** True when the credentials/signature were accepted. */
  authorized: boolean;
  /** Status and vendor error code of the answer. */
  status: number;
  errorCode?: string | undefined;
  /** Request headers as received (names lower-case). */
  headers: Record<string, string | undefined>;
}

function headersOf(req: IncomingMessage): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(req.headers)) out[k] = Array.isArray(v) ? v.join(',') : v;
  return out;
}

interface Injected {
  action: string | undefined;
  code: string;
  message: string;
  status: number;
  times: number;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name.toLowerCase()];
  return Array.isArray(v) ? v.join(',') : v;
}

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections?.();
    server.close(() => resolve());
  });
}

/** A real registry (no auth or Basic) whose content a cloud stub's listings mirror. */
export interface InventorySource {
  url: string;
  username?: string;
  password?: string;
}

const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

/**
 * What a real registry holds, as repository → tags with digests (catalog, tags/list, a manifest HEAD
 * per tag): lets a TCR/SWR stub answer its bulk listings for content pushed through the registry.
 * `firstSeen` keeps a stable "update time" per repository:tag@digest across calls.
 */
async function readRegistryInventory(src: InventorySource, firstSeen: Map<string, string>): Promise<Map<string, { tag: string; digest: string; size: number; time: string }[]>> {
  const headers: Record<string, string> = {};
  if (src.username !== undefined) headers.authorization = `Basic ${Buffer.from(`${src.username}:${src.password ?? ''}`).toString('base64')}`;
  const json = async (path: string) => {
    const res = await fetch(new URL(path, src.url), { headers });
    return res.ok ? ((await res.json()) as Record<string, unknown>) : undefined;
  };
  const out = new Map<string, { tag: string; digest: string; size: number; time: string }[]>();
  const catalog = (await json('/v2/_catalog?n=1000'))?.repositories as string[] | undefined;
  for (const repo of catalog ?? []) {
    const tags = ((await json(`/v2/${repo}/tags/list`))?.tags as string[] | null | undefined) ?? [];
    const list = [];
    for (const tag of tags) {
      const res = await fetch(new URL(`/v2/${repo}/manifests/${tag}`, src.url), { method: 'HEAD', headers: { ...headers, accept: MANIFEST_ACCEPT } });
      const digest = res.headers.get('docker-content-digest');
      if (!res.ok || !digest) continue;
      const key = `${repo}:${tag}@${digest}`;
      if (!firstSeen.has(key)) firstSeen.set(key, new Date().toISOString());
      list.push({ tag, digest, size: Number(res.headers.get('content-length') ?? 0), time: firstSeen.get(key)! });
    }
    out.set(repo, list);
  }
  return out;
}

/* ----------------------------------------------------------------------------------------------- */
/* Tencent TCR                                                                                      */
/* ----------------------------------------------------------------------------------------------- */

export interface TcrStubOptions {
  secretId: string;
  secretKey: string;
  instanceId: string;
  /** Expected X-TC-Region (default: not checked). */
  region?: string;
  /** Expected X-TC-Token (temporary cloud credentials). */
  sessionToken?: string;
  /** Namespaces that already exist. */
  namespaces?: string[];
  /** Names the cloud refuses (InvalidParameter.ErrNamespaceReserved), e.g. ["library"]. */
  reservedNamespaces?: string[];
  /** Maximum namespaces in the instance (LimitExceeded.ErrNamespaceMaxLimit beyond). */
  namespaceQuota?: number;
  /** Stub clock in ms (default Date.now). */
  now?: () => number;
  /** Allowed clock skew in seconds (default 300, as Tencent). */
  maxSkewSeconds?: number;
  /** Lifetime of temp tokens in ms (default 1 hour). */
  tokenTtlMs?: number;
  /** Always hand out these credentials (so a real registry can be configured with them up front). */
  fixedCredentials?: { username: string; password: string };
  /** Called for every issued token, before the answer is sent (e.g. to add it to an htpasswd registry). */
  onToken?: (username: string, password: string) => void | Promise<void>;
  /** Unit of CreateInstanceToken's ExpTime (the SDK says "timestamp, no unit"; default ms as Harbor reads it). */
  expTimeUnit?: 'ms' | 's';
  /** Tags per repository ("namespace/name") for DescribeRepositories / DescribeImages. */
  images?: Record<string, TcrStubImage[]>;
  /** Answer DescribeRepositories / DescribeImages from what this real registry holds (read per call). */
  inventoryFrom?: InventorySource;
}

/** One tag of a TCR repository, as DescribeImages lists it. */
export interface TcrStubImage {
  tag: string;
  digest: string;
  size?: number;
  /** ISO time; answered in Go's time format like the API. */
  updateTime?: string;
  kind?: string;
}

export interface IssuedTcrToken {
  username: string;
  password: string;
  /** Milliseconds since the epoch, as in the API's ExpTime. */
  expTime: number;
  type: 'temp' | 'longterm';
}

export interface TcrStub {
  /** API endpoint, e.g. http://127.0.0.1:12345 (use as tcr.apiEndpoint). */
  url: string;
  requests: StubRequestLog[];
  /** Namespace name → public. */
  namespaces: Map<string, boolean>;
  tokens: IssuedTcrToken[];
  /** Repository ("namespace/name") → its tags; change it to change what the listings answer. */
  images: Map<string, TcrStubImage[]>;
  /** Makes the next `times` calls (of `action`, or any) fail with this code, e.g. RequestLimitExceeded. */
  injectError(code: string, message?: string, opts?: { action?: string; times?: number }): void;
  /** Requests of one action (authorized or not). */
  calls(action: string): StubRequestLog[];
  close(): Promise<void>;
}

const TCR_NAME = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;

export async function startTcrStub(opts: TcrStubOptions): Promise<TcrStub> {
  const now = opts.now ?? Date.now;
  const namespaces = new Map<string, boolean>((opts.namespaces ?? []).map((n) => [n, false]));
  const reserved = new Set(opts.reservedNamespaces ?? []);
  const requests: StubRequestLog[] = [];
  const tokens: IssuedTcrToken[] = [];
  const injected: Injected[] = [];
  const images = new Map<string, TcrStubImage[]>(Object.entries(opts.images ?? {}));
  const firstSeen = new Map<string, string>();
  for (const repo of images.keys()) if (!namespaces.has(repo.split('/')[0]!)) namespaces.set(repo.split('/')[0]!, false);
  let userCounter = 0;
  /** Go's time.Time.String() form, as TCR answers times: "2006-01-02 15:04:05.999999999 +0000 UTC". */
  const goTime = (iso: string) => `${iso.slice(0, 10)} ${iso.slice(11, 19)}.${iso.slice(20, 23)}000000 +0000 UTC`;
  /** Listings page like the SDK model says: Limit per page, Offset = page number from 1. */
  const page = <T>(all: T[], params: Record<string, unknown>, defaultLimit: number, maxLimit: number): T[] | string => {
    const limit = params.Limit === undefined ? defaultLimit : Number(params.Limit);
    const offset = params.Offset === undefined ? 1 : Number(params.Offset);
    if (!Number.isInteger(limit) || limit < 1 || limit > maxLimit) return `Limit must be 1..${maxLimit}`;
    if (!Number.isInteger(offset) || offset < 0) return 'Offset must be a page number';
    const p = Math.max(1, offset); // the service reads page 0 as the first page
    return all.slice((p - 1) * limit, p * limit);
  };

  const send = (res: ServerResponse, log: StubRequestLog, response: Record<string, unknown>) => {
    const requestId = randomUUID();
    const error = response.Error as { Code?: string } | undefined;
    log.status = 200;
    log.errorCode = error?.Code;
    requests.push(log);
    // Tencent answers HTTP 200 for API errors too; the error is in Response.Error.
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ Response: { ...response, RequestId: requestId } }));
  };
  const fail = (code: string, message: string) => ({ Error: { Code: code, Message: message } });

  /** Verifies TC3-HMAC-SHA256 from the raw request; returns an error response or undefined. */
  const verify = (req: IncomingMessage, body: Buffer): Record<string, unknown> | undefined => {
    const auth = header(req, 'authorization') ?? '';
    const m = /^TC3-HMAC-SHA256 Credential=([^/]+)\/(\d{4}-\d{2}-\d{2})\/([^/]+)\/tc3_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$/.exec(auth);
    if (!m) return fail('AuthFailure.InvalidAuthorization', 'Authorization header format error.');
    const [, secretId, date, service, signedHeaders, signature] = m as unknown as [string, string, string, string, string, string];
    if (secretId !== opts.secretId) return fail('AuthFailure.SecretIdNotFound', 'The SecretId is not found, please ensure that your SecretId is correct.');
    const timestamp = Number(header(req, 'x-tc-timestamp'));
    if (!Number.isInteger(timestamp)) return fail('MissingParameter', 'The request is missing a required parameter `Timestamp`.');
    if (Math.abs(now() / 1000 - timestamp) > (opts.maxSkewSeconds ?? 300)) {
      return fail('AuthFailure.SignatureExpire', `Signature expired. Timestamp ${timestamp} differs from server time by more than ${opts.maxSkewSeconds ?? 300} seconds.`);
    }
    if (new Date(timestamp * 1000).toISOString().slice(0, 10) !== date || service !== 'tcr') {
      return fail('AuthFailure.SignatureFailure', 'The provided credentials could not be validated. Please check your signature is correct.');
    }
    const names = signedHeaders.split(';');
    if (!names.includes('content-type') || !names.includes('host')) return fail('AuthFailure.SignatureFailure', 'content-type and host must be signed.');
    const canonicalHeaders = names.map((n) => `${n}:${(header(req, n) ?? '').trim().toLowerCase()}\n`).join('');
    const url = new URL(req.url ?? '/', 'http://x');
    const canonical = [req.method, url.pathname, url.search.slice(1), canonicalHeaders, signedHeaders, sha256(body)].join('\n');
    const stringToSign = ['TC3-HMAC-SHA256', String(timestamp), `${date}/${service}/tc3_request`, sha256(canonical)].join('\n');
    const kDate = createHmac('sha256', `TC3${opts.secretKey}`).update(date).digest();
    const kService = createHmac('sha256', kDate).update(service).digest();
    const kSigning = createHmac('sha256', kService).update('tc3_request').digest();
    const expected = createHmac('sha256', kSigning).update(stringToSign).digest('hex');
    if (expected !== signature) return fail('AuthFailure.SignatureFailure', 'The provided credentials could not be validated. Please check your signature is correct.');
    if (opts.sessionToken !== undefined && header(req, 'x-tc-token') !== opts.sessionToken) return fail('AuthFailure.TokenFailure', 'Token verification failed.');
    return undefined;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const body = await readBody(req);
    const action = header(req, 'x-tc-action') ?? '';
    let params: Record<string, unknown> | undefined;
    try {
      params = body.length ? (JSON.parse(body.toString('utf8')) as Record<string, unknown>) : {};
    } catch {
      params = undefined;
    }
    const log: StubRequestLog = { method: req.method ?? '', path: req.url ?? '', action, params, authorized: false, status: 0, headers: headersOf(req) };
    if (req.method !== 'POST') return send(res, log, fail('InvalidParameter', 'only POST is supported by this stub'));
    const authError = verify(req, body);
    if (authError) return send(res, log, authError);
    log.authorized = true;
    if (header(req, 'x-tc-version') !== '2019-09-24') return send(res, log, fail('InvalidParameterValue', `invalid X-TC-Version ${header(req, 'x-tc-version')}`));
    if (opts.region && header(req, 'x-tc-region') !== opts.region) return send(res, log, fail('InvalidParameterValue', `The instance is not in region ${header(req, 'x-tc-region')}.`));
    if (!params) return send(res, log, fail('InvalidParameter', 'The request body is not valid JSON.'));
    const inj = injected.find((i) => i.times > 0 && (!i.action || i.action === action));
    if (inj) {
      inj.times--;
      return send(res, log, fail(inj.code, inj.message));
    }
    if (params.RegistryId !== opts.instanceId) return send(res, log, fail('ResourceNotFound', `instance ${String(params.RegistryId)} not found`));

    if (opts.inventoryFrom && (action === 'DescribeRepositories' || action === 'DescribeImages')) {
      for (const [repo, tags] of await readRegistryInventory(opts.inventoryFrom, firstSeen)) {
        images.set(repo, tags.map((t) => ({ tag: t.tag, digest: t.digest, size: t.size, updateTime: t.time })));
        if (!namespaces.has(repo.split('/')[0]!)) namespaces.set(repo.split('/')[0]!, false);
      }
    }
    switch (action) {
      case 'DescribeNamespaces': {
        if (namespaces.size === 0) return send(res, log, fail('ResourceNotFound.ErrNoNamespace', 'no namespace in this instance'));
        const filter = typeof params.NamespaceName === 'string' ? params.NamespaceName : '';
        // Not an exact match, like the real API (Harbor compares the names itself).
        const all = [...namespaces].filter(([n]) => n.includes(filter));
        const list = page(all, params, 20, 100);
        if (typeof list === 'string') return send(res, log, fail('InvalidParameterValue', list));
        return send(res, log, {
          NamespaceList: list.map(([n, pub]) => ({ Name: n, CreationTime: goTime(new Date(now()).toISOString()), Public: pub, NamespaceId: [...namespaces.keys()].indexOf(n) + 1, Metadata: [], CVEWhitelistItems: [], AutoScan: false, PreventVUL: false, Severity: '' })),
          TotalCount: all.length,
        });
      }
      case 'DescribeRepositories': {
        const ns = typeof params.NamespaceName === 'string' && params.NamespaceName !== '' ? params.NamespaceName : undefined;
        if (ns !== undefined && !namespaces.has(ns)) return send(res, log, fail('ResourceNotFound.ErrNoNamespace', `namespace ${ns} not found`));
        const all = [...images.keys()].filter((r) => ns === undefined || r.startsWith(`${ns}/`)).sort();
        const list = page(all, params, 20, 100);
        if (typeof list === 'string') return send(res, log, fail('InvalidParameterValue', list));
        return send(res, log, {
          RepositoryList: list.map((r) => {
            const times = (images.get(r) ?? []).map((i) => i.updateTime ?? '2024-01-01T00:00:00.000Z').sort();
            return { Name: r, Namespace: r.split('/')[0], CreationTime: goTime(times[0] ?? '2024-01-01T00:00:00.000Z'), Public: false, Description: '', BriefDescription: '', UpdateTime: goTime(times[times.length - 1] ?? '2024-01-01T00:00:00.000Z') };
          }),
          TotalCount: all.length,
        });
      }
      case 'DescribeImages': {
        const ns = String(params.NamespaceName ?? '');
        const name = String(params.RepositoryName ?? '');
        if (!ns || !name) return send(res, log, fail('MissingParameter', 'NamespaceName and RepositoryName are required'));
        if (!namespaces.has(ns)) return send(res, log, fail('ResourceNotFound.ErrNoNamespace', `namespace ${ns} not found`));
        const tags = images.get(`${ns}/${name}`);
        if (!tags) return send(res, log, fail('ResourceNotFound.ErrNoRepo', `repository ${ns}/${name} not found`));
        const all = [...tags].sort((a, b) => (b.updateTime ?? '').localeCompare(a.updateTime ?? '')); // newest first
        const list = page(all, params, 20, 100);
        if (typeof list === 'string') return send(res, log, fail('InvalidParameterValue', list));
        return send(res, log, {
          ImageInfoList: list.map((i) => ({ Digest: i.digest, Size: i.size ?? 1234, ImageVersion: i.tag, UpdateTime: goTime(i.updateTime ?? '2024-01-01T00:00:00.000Z'), Kind: i.kind ?? 'image', KmsSignature: '' })),
          TotalCount: all.length,
        });
      }
      case 'CreateNamespace': {
        const name = String(params.NamespaceName ?? '');
        if (typeof params.IsPublic !== 'boolean') return send(res, log, fail('MissingParameter', 'IsPublic is required'));
        if (name.length < 2 || name.length > 30 || !TCR_NAME.test(name)) return send(res, log, fail('InvalidParameter', `invalid namespace name ${name}`));
        if (reserved.has(name)) return send(res, log, fail('InvalidParameter.ErrNamespaceReserved', `namespace ${name} is reserved`));
        if (namespaces.has(name)) return send(res, log, fail('InvalidParameter.ErrNamespaceExist', `namespace ${name} already exists`));
        if (opts.namespaceQuota !== undefined && namespaces.size >= opts.namespaceQuota) {
          return send(res, log, fail('LimitExceeded.ErrNamespaceMaxLimit', `namespace quota ${opts.namespaceQuota} reached`));
        }
        namespaces.set(name, params.IsPublic);
        return send(res, log, {});
      }
      case 'CreateInstanceToken': {
        const type = params.TokenType === 'longterm' ? 'longterm' : 'temp';
        const creds = opts.fixedCredentials ?? { username: `1000${String(++userCounter).padStart(8, '0')}`, password: randomBytes(24).toString('base64url') };
        const expTime = type === 'temp' ? now() + (opts.tokenTtlMs ?? 3_600_000) : now() + 100 * 365 * 86_400_000;
        await opts.onToken?.(creds.username, creds.password);
        tokens.push({ ...creds, expTime, type });
        const answered = opts.expTimeUnit === 's' ? Math.floor(expTime / 1000) : expTime;
        return send(res, log, { Username: creds.username, Token: creds.password, ExpTime: answered, ...(type === 'longterm' ? { TokenId: randomUUID() } : {}) });
      }
      default:
        return send(res, log, fail('InvalidAction', `The action ${action} is not supported by this stub.`));
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      res.writeHead(500);
      res.end(String(err));
    });
  });
  const port = await listenOnFreePort(server, LOOPBACK);
  return {
    url: `http://${LOOPBACK}:${port}`,
    requests,
    namespaces,
    tokens,
    images,
    injectError(code, message = 'injected by the stub', o = {}) {
      injected.push({ action: o.action, code, message, status: 200, times: o.times ?? 1 });
    },
    calls: (action) => requests.filter((r) => r.action === action),
    close: () => close(server),
  };
}

/* ----------------------------------------------------------------------------------------------- */
/* Huawei / OTC SWR                                                                                 */
/* ----------------------------------------------------------------------------------------------- */

export interface SwrStubOptions {
  accessKey: string;
  secretKey: string;
  /** Region for the registry login username `<region>@<AK>` (dockyard Basic auth). */
  region?: string;
  /** Organizations of this tenant that already exist. */
  namespaces?: string[];
  /** Organizations owned by another tenant: POST answers 409, GET answers 404. */
  foreignNamespaces?: string[];
  /** Organizations per tenant (SWR's default is 5). */
  namespaceQuota?: number;
  now?: () => number;
  /** Allowed X-Sdk-Date skew in seconds (API gateway: 15 minutes). */
  maxSkewSeconds?: number;
  /** Extra Basic credentials accepted by the dockyard endpoints (besides the AK/SK login). */
  registryUsers?: Record<string, string>;
  /** Answer of dockyard GET for a missing organization: 200 `{}` (what Harbor's tests mock) or 404. */
  dockyardMissingStatus?: 200 | 404;
  /** IAM projects by name (GET /v3/projects?name=); default: one project named after `region`. */
  projects?: Record<string, string>;
  /** Refuse SWR calls without X-Project-Id (the gateway accepts them for single-project accounts). */
  requireProjectId?: boolean;
  /** Error bodies of SWR itself: `{error_code, error_msg}` (default), `{error: {code, message}}`, or legacy arrays. */
  errorFormat?: 'flat' | 'nested' | 'array';
  /** Tags per repository ("organization/name") for the listings. */
  repos?: Record<string, SwrStubTag[]>;
  /** Answer the repository and tag listings from what this real registry holds (read per call). */
  inventoryFrom?: InventorySource;
}

/** One tag of an SWR repository, as GET /v2/manage/namespaces/{ns}/repos/{repo}/tags lists it. */
export interface SwrStubTag {
  tag: string;
  digest: string;
  size?: number;
  /** ISO time (default 2024-01-01). */
  updated?: string;
}

/** The project id the SWR stub's IAM hands out for a region (stable, so tests can assert it). */
export function swrStubProjectId(region: string): string {
  return createHash('md5').update(`project:${region}`).digest('hex');
}

export interface SwrStub {
  /** Management API endpoint (use as swr.apiEndpoint); the same server also answers /dockyard/…. */
  url: string;
  requests: StubRequestLog[];
  namespaces: Set<string>;
  /** Repository ("organization/name") → its tags. */
  repos: Map<string, SwrStubTag[]>;
  injectError(status: number, code: string, message?: string, opts?: { action?: string; times?: number }): void;
  calls(action: string): StubRequestLog[];
  close(): Promise<void>;
}

// The organization rule from SWR's API docs.
const SWR_ORG = /^[a-z][a-z0-9]*(?:(?:[._]|__|-+)[a-z0-9]+)*$/;

function sdkEscape(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function parseSdkDate(v: string): number | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(v);
  return m ? Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!) : undefined;
}

export async function startSwrStub(opts: SwrStubOptions): Promise<SwrStub> {
  const now = opts.now ?? Date.now;
  const namespaces = new Set(opts.namespaces ?? []);
  const foreign = new Set(opts.foreignNamespaces ?? []);
  const requests: StubRequestLog[] = [];
  const injected: Injected[] = [];
  const users = new Map(Object.entries(opts.registryUsers ?? {}));
  const repos = new Map<string, SwrStubTag[]>(Object.entries(opts.repos ?? {}));
  const firstSeen = new Map<string, string>();
  for (const r of repos.keys()) namespaces.add(r.split('/')[0]!);
  const iamProjects = opts.projects ?? (opts.region ? { [opts.region]: swrStubProjectId(opts.region) } : {});
  const projectIds = new Set(Object.values(iamProjects));
  if (opts.region) users.set(`${opts.region}@${opts.accessKey}`, createHmac('sha256', opts.secretKey).update(opts.accessKey).digest('hex'));

  const send = (res: ServerResponse, log: StubRequestLog, status: number, body?: unknown, extraHeaders: Record<string, string> = {}) => {
    log.status = status;
    if (status >= 400 && body) {
      const e = (Array.isArray(body) ? body[0] : body) as Record<string, string> & { error?: { code?: string } };
      log.errorCode = e.errorCode ?? e.error_code ?? e.error?.code;
    }
    requests.push(log);
    res.writeHead(status, { 'content-type': 'application/json', 'x-request-id': randomUUID().replace(/-/g, ''), ...extraHeaders });
    res.end(body === undefined ? '' : JSON.stringify(body));
  };
  // SWR's own errors in the shapes the core SDK reads ({error_code, error_msg} or {error: {code,
  // message}}), or the legacy array; the API gateway's are an object with request_id.
  const swrErr = (code: string, message: string): unknown =>
    opts.errorFormat === 'array' ? [{ errorCode: code, errorMessage: message, detail: '' }]
    : opts.errorFormat === 'nested' ? { error: { code, message } }
    : { error_code: code, error_msg: message };
  const gatewayErr = (message: string) => ({ error_msg: `Incorrect IAM authentication information: ${message}`, error_code: 'APIGW.0301', request_id: randomUUID().replace(/-/g, '') });

  /** Verifies SDK-HMAC-SHA256 from the raw request; returns an error message or undefined. */
  const verify = (req: IncomingMessage, url: URL, body: Buffer): string | undefined => {
    const m = /^SDK-HMAC-SHA256\s+Access=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})$/.exec(header(req, 'authorization') ?? '');
    if (!m) return 'verify aksk signature fail, invalid Authorization header';
    const [, access, signedHeaders, signature] = m as unknown as [string, string, string, string];
    if (access !== opts.accessKey) return 'Get secretKey failed,ak:******,err:ak not exist';
    const xDate = header(req, 'x-sdk-date') ?? '';
    const names = signedHeaders.split(';');
    if (!names.includes('x-sdk-date')) return 'verify aksk signature fail, x-sdk-date must be signed';
    const t = parseSdkDate(xDate);
    if (t === undefined || Math.abs(now() - t) > (opts.maxSkewSeconds ?? 900) * 1000) return 'verify aksk signature fail, the request has expired (X-Sdk-Date)';
    const uri = url.pathname
      .split('/')
      .map((s) => sdkEscape(decodeURIComponent(s)))
      .join('/');
    const query = [...url.searchParams]
      .sort(([a, x], [b, y]) => (a === b ? (x < y ? -1 : 1) : a < b ? -1 : 1))
      .map(([k, v]) => `${sdkEscape(k)}=${sdkEscape(v)}`)
      .join('&');
    const canonical = [
      req.method,
      uri.endsWith('/') ? uri : `${uri}/`,
      query,
      names.map((n) => `${n}:${(header(req, n) ?? '').trim()}\n`).join(''),
      signedHeaders,
      sha256(body),
    ].join('\n');
    const expected = createHmac('sha256', opts.secretKey).update(`SDK-HMAC-SHA256\n${xDate}\n${sha256(canonical)}`).digest('hex');
    return expected === signature ? undefined : 'verify aksk signature fail';
  };

  const basicUser = (req: IncomingMessage): boolean => {
    const m = /^Basic (.+)$/i.exec(header(req, 'authorization') ?? '');
    if (!m) return false;
    const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    return i > 0 && users.get(decoded.slice(0, i)) === decoded.slice(i + 1);
  };

  const createOrg = (name: string): { status: number; body?: unknown } => {
    if (!SWR_ORG.test(name) || name.length > 64) return { status: 400, body: swrErr('SVCSTG.SWR.4000014', `Invalid parameter: namespace ${name} is invalid`) };
    if (namespaces.has(name) || foreign.has(name)) return { status: 409, body: swrErr('SVCSTG.SWR.4090018', `namespace ${name} already exists`) };
    if (namespaces.size >= (opts.namespaceQuota ?? 5)) {
      return { status: 400, body: swrErr('SVCSTG.SWR.4000077', `The number of namespaces exceeds the upper limit (${opts.namespaceQuota ?? 5})`) };
    }
    namespaces.add(name);
    return { status: 201 };
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const body = await readBody(req);
    const url = new URL(req.url ?? '/', 'http://x');
    let params: Record<string, unknown> | undefined;
    try {
      params = body.length ? (JSON.parse(body.toString('utf8')) as Record<string, unknown>) : undefined;
    } catch {
      params = undefined;
    }
    const manageOne = /^\/v2\/manage\/namespaces\/([^/]+)$/.exec(url.pathname);
    const tagsPath = /^\/v2\/manage\/namespaces\/([^/]+)\/repos\/([^/]+)\/tags$/.exec(url.pathname);
    const dockOne = /^\/dockyard\/v2\/namespaces\/([^/]+)$/.exec(url.pathname);
    const action =
      url.pathname === '/v2/manage/namespaces' ? `${req.method} /v2/manage/namespaces`
      : manageOne ? `${req.method} /v2/manage/namespaces/{namespace}`
      : tagsPath ? `${req.method} /v2/manage/namespaces/{namespace}/repos/{repository}/tags`
      : url.pathname === '/dockyard/v2/namespaces' ? `${req.method} /dockyard/v2/namespaces`
      : dockOne ? `${req.method} /dockyard/v2/namespaces/{namespace}`
      : `${req.method} ${url.pathname}`;
    const log: StubRequestLog = { method: req.method ?? '', path: req.url ?? '', action, params, authorized: false, status: 0, headers: headersOf(req) };

    if (url.pathname.startsWith('/dockyard/')) {
      if (!basicUser(req)) return send(res, log, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }, { 'www-authenticate': 'Basic realm="swr"' });
    } else {
      const reason = verify(req, url, body);
      if (reason) return send(res, log, 401, gatewayErr(reason));
      if (url.pathname.startsWith('/v2/')) {
        const project = header(req, 'x-project-id');
        if (project === undefined ? opts.requireProjectId : !projectIds.has(project)) {
          // (The code is this stub's choice; the gateway refuses a project the AK does not belong to.)
          return send(res, log, 403, { error_code: 'APIGW.0302', error_msg: `The project ${project ?? '(none)'} does not match the credentials`, request_id: randomUUID().replace(/-/g, '') });
        }
      }
    }
    log.authorized = true;
    if (url.pathname === '/v3/projects' && req.method === 'GET') {
      // IAM (Keystone) KeystoneListProjects, the look-up the SDK makes for X-Project-Id.
      const name = url.searchParams.get('name');
      const list = Object.entries(iamProjects)
        .filter(([n]) => name === null || n === name)
        .map(([n, id]) => ({ id, name: n, domain_id: 'd0000000000000000000000000000001', description: '', enabled: true, is_domain: false, parent_id: 'd0000000000000000000000000000001', links: { self: `https://iam.example/v3/projects/${id}` } }));
      return send(res, log, 200, { projects: list, links: { self: `https://iam.example/v3/projects${url.search}`, previous: null, next: null } });
    }
    const inj = injected.find((i) => i.times > 0 && (!i.action || i.action === action));
    if (inj) {
      inj.times--;
      return send(res, log, inj.status, swrErr(inj.code, inj.message));
    }

    if ((action === 'POST /v2/manage/namespaces' || action === 'POST /dockyard/v2/namespaces')) {
      const name = typeof params?.namespace === 'string' ? params.namespace : '';
      const r = createOrg(name);
      return send(res, log, r.status, r.body);
    }
    const listing = (all: unknown[]) => {
      // limit and offset (an item index) work only together, as the API docs say.
      const limit = url.searchParams.get('limit');
      const offset = url.searchParams.get('offset');
      if ((limit === null) !== (offset === null)) return send(res, log, 400, swrErr('SVCSTG.SWR.4001001', 'limit and offset must be used together'));
      const from = offset === null ? 0 : Number(offset);
      const n = limit === null ? all.length : Number(limit);
      if (!Number.isInteger(from) || from < 0 || !Number.isInteger(n) || n < 1 || n > 1000) return send(res, log, 400, swrErr('SVCSTG.SWR.4001001', 'invalid limit or offset'));
      const page = all.slice(from, from + n);
      return send(res, log, 200, page, { 'content-range': `${from}-${from + Math.max(page.length, 1) - 1}/${all.length}` });
    };
    if (opts.inventoryFrom && req.method === 'GET' && (tagsPath || url.pathname === '/v2/manage/repos')) {
      for (const [repo, tags] of await readRegistryInventory(opts.inventoryFrom, firstSeen)) {
        repos.set(repo, tags.map((t) => ({ tag: t.tag, digest: t.digest, size: t.size, updated: t.time })));
        namespaces.add(repo.split('/')[0]!);
      }
    }
    if (tagsPath && req.method === 'GET') {
      const ns = decodeURIComponent(tagsPath[1]!);
      const name = decodeURIComponent(tagsPath[2]!).replace(/\$/g, '/');
      const tags = repos.get(`${ns}/${name}`);
      if (!namespaces.has(ns)) return send(res, log, 404, swrErr('SVCSTG.SWR.4040017', `namespace ${ns} not found`));
      if (!tags) return send(res, log, 404, swrErr('SVCSTG.SWR.4040006', `repository ${ns}/${name} not found`));
      const order = url.searchParams.get('order_column') === 'updated_at' ? url.searchParams.get('order_type') ?? 'desc' : 'desc';
      const sorted = [...tags].sort((a, b) => (a.updated ?? '').localeCompare(b.updated ?? '') * (order === 'asc' ? 1 : -1));
      const repoId = [...repos.keys()].indexOf(`${ns}/${name}`) + 1;
      return listing(
        sorted.map((t, i) => ({
          id: repoId * 10000 + i,
          repo_id: repoId,
          Tag: t.tag,
          image_id: t.digest.slice(7, 71),
          manifest: '',
          digest: t.digest,
          schema: 2,
          path: `swr.${opts.region ?? 'eu-de'}.example/${ns}/${name}:${t.tag}`,
          internal_path: '',
          size: t.size ?? 1234,
          is_trusted: false,
          created: t.updated ?? '2024-01-01T00:00:00Z',
          updated: t.updated ?? '2024-01-01T00:00:00Z',
          deleted: null,
          domain_id: 'd0000000000000000000000000000001',
          scanned: false,
          tag_type: 0,
        })),
      );
    }
    if (url.pathname === '/v2/manage/repos' && req.method === 'GET') {
      const ns = url.searchParams.get('namespace');
      const names = [...repos.keys()].filter((r) => !ns || r.startsWith(`${ns}/`)).sort();
      return listing(
        names.map((r) => {
          const tags = repos.get(r)!;
          return {
            name: r.slice(r.indexOf('/') + 1),
            category: 'other',
            description: '',
            size: tags.reduce((n, t) => n + (t.size ?? 1234), 0),
            is_public: false,
            num_images: tags.length,
            num_download: 0,
            created_at: '2024-01-01T00:00:00Z',
            updated_at: '2024-01-01T00:00:00Z',
            logo: '',
            url: '',
            path: `swr.example/${r}`,
            internal_path: '',
            domain_name: 'tenant',
            namespace: r.split('/')[0],
            tags: tags.map((t) => t.tag),
            status: false,
            total_range: names.length,
          };
        }),
      );
    }
    if (manageOne && req.method === 'GET') {
      const name = decodeURIComponent(manageOne[1]!);
      if (!namespaces.has(name)) return send(res, log, 404, swrErr('SVCSTG.SWR.4040017', `namespace ${name} not found`));
      return send(res, log, 200, { id: 1, name, creator_name: 'ferry', auth: 7 });
    }
    if (dockOne && req.method === 'GET') {
      const name = decodeURIComponent(dockOne[1]!);
      if (namespaces.has(name)) return send(res, log, 200, { id: 1, name, creator_name: 'ferry', auth: 7, user_count: 1, image_count: 0 });
      return (opts.dockyardMissingStatus ?? 200) === 200 ? send(res, log, 200, {}) : send(res, log, 404, swrErr('SVCSTG.SWR.4040017', `namespace ${name} not found`));
    }
    return send(res, log, 404, swrErr('SVCSTG.SWR.4040000', `no route ${action}`));
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      res.writeHead(500);
      res.end(String(err));
    });
  });
  const port = await listenOnFreePort(server, LOOPBACK);
  return {
    url: `http://${LOOPBACK}:${port}`,
    requests,
    namespaces,
    repos,
    injectError(status, code, message = 'injected by the stub', o = {}) {
      injected.push({ action: o.action, code, message, status, times: o.times ?? 1 });
    },
    calls: (action) => requests.filter((r) => r.action === action),
    close: () => close(server),
  };
}

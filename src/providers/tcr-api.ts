// Tencent Cloud TCR Enterprise management API (tcr.tencentcloudapi.com, version 2019-09-24): namespaces,
// instance access tokens and the bulk listings, signed with TC3-HMAC-SHA256. Requests are POST / with a
// JSON body sent as `Content-Type: application/json` (what the official SDKs send and sign); every
// answer is HTTP 200 with either `Response.Error {Code, Message}` or the result, plus `RequestId`.
//
// Request and response models as the official SDK defines them (tencentcloud-sdk-nodejs,
// services/tcr/v20190924/tcr_models.d.ts):
// - listings page with `Limit` (items per page) and `Offset`, which is a PAGE NUMBER counted from 1
//   ("limit 20 offset 2 = items 21-40"), not an item offset; every answer carries `TotalCount`;
// - CreateInstanceToken {RegistryId, TokenType: temp (1 h, default) | longterm, Desc} →
//   {Username, Token, ExpTime, TokenId?}; ExpTime is "a timestamp without unit": Harbor's tencentcr
//   adapter divides it by 1e3 (milliseconds), so Ferry decides by magnitude (see expTimeToDate);
// - DescribeNamespaces {RegistryId, NamespaceName, Limit, Offset} → {NamespaceList[].Name, TotalCount};
//   the name filter is not an exact match (Harbor compares names itself), so we do too;
// - CreateNamespace {RegistryId, NamespaceName, IsPublic}; Harbor creates namespaces private;
// - DescribeRepositories {RegistryId, NamespaceName?, Limit <= 100, Offset} → {RepositoryList[]
//   {Name, Namespace, CreationTime, UpdateTime, …}, TotalCount};
// - DescribeImages {RegistryId, NamespaceName, RepositoryName, Limit (default 20), Offset} →
//   {ImageInfoList[] {Digest, Size, ImageVersion (the tag), UpdateTime, Kind}, TotalCount}.
import type { Credentials, CredentialSource } from '../registry/auth.js';
import type { RegistryConfig } from '../config/schema.js';
import { CloudApiError } from './cloud-error.js';
import type { Transport } from '../http/transport.js';
import { OncePerKey, cloudTransport, sendCloudRequest, type CloudHttpOptions } from './cloud-http.js';
import { signTc3 } from './tc3-signer.js';

export const TCR_API_ENDPOINT = 'https://tcr.tencentcloudapi.com';
export const TCR_API_VERSION = '2019-09-24';

/** Error codes of the TCR API that Ferry reacts to. */
export const TcrErrorCodes = {
  namespaceExists: 'InvalidParameter.ErrNamespaceExist',
  namespaceReserved: 'InvalidParameter.ErrNamespaceReserved',
  namespaceQuota: 'LimitExceeded.ErrNamespaceMaxLimit',
  repoQuota: 'LimitExceeded.ErrRepoMaxLimit',
  noNamespace: 'ResourceNotFound.ErrNoNamespace',
  noRepository: 'ResourceNotFound.ErrNoRepo',
} as const;

type TcrConfig = NonNullable<RegistryConfig['tcr']>;

export interface TcrApiOptions extends CloudHttpOptions {
  secretId: string;
  secretKey: string;
  region: string;
  /** The TCR Enterprise instance id (RegistryId), e.g. tcr-xxxxxxxx. */
  instanceId: string;
  apiEndpoint?: string | undefined;
  /** Session token of temporary cloud credentials (X-TC-Token). */
  token?: string | undefined;
  /** Clock in ms (tests); default Date.now. */
  now?: (() => number) | undefined;
}

export interface TcrInstanceToken {
  username: string;
  password: string;
  expiresAt: Date;
  /** Only for longterm tokens. */
  tokenId?: string | undefined;
}

export interface TcrNamespaceInfo {
  Name: string;
  [key: string]: unknown;
}

/** TcrRepositoryInfo of the SDK (the fields Ferry reads). */
export interface TcrRepositoryInfo {
  Name?: string;
  Namespace?: string;
  CreationTime?: string;
  UpdateTime?: string;
  [key: string]: unknown;
}

/** TcrImageInfo of the SDK: one tag of a repository. */
export interface TcrImageInfo {
  Digest?: string;
  Size?: number;
  /** The tag. */
  ImageVersion?: string;
  /** "2006-01-02 15:04:05.999999999 -0700 MST" or ISO 8601. */
  UpdateTime?: string;
  Kind?: string;
  [key: string]: unknown;
}

/** Page size of DescribeRepositories and DescribeImages: the SDK's documented maximum. */
export const TCR_PAGE_SIZE = 100;

/**
 * ExpTime of CreateInstanceToken as a Date. The SDK documents "a timestamp, without unit"; Harbor
 * reads milliseconds. Decided by magnitude: below 1e11 it is seconds (1e11 s is the year 5138, 1e11 ms
 * is 1973), else milliseconds.
 */
export function expTimeToDate(expTime: number): Date {
  return new Date(expTime < 1e11 ? expTime * 1000 : expTime);
}

/** TCR's time strings ("2006-01-02 15:04:05.999999999 -0700 MST", or ISO 8601) as ISO, else undefined. */
export function tcrTime(s: string | undefined | null): string | undefined {
  if (!s) return undefined;
  const m = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(\.\d+)?\s*(Z|[+-]\d{2}:?\d{2})?/.exec(s.trim());
  if (!m) return undefined;
  const frac = m[3] ? m[3].slice(0, 4) : '';
  const zone = !m[4] || m[4] === 'Z' ? 'Z' : m[4].includes(':') ? m[4] : `${m[4].slice(0, 3)}:${m[4].slice(3)}`;
  const d = new Date(`${m[1]}T${m[2]}${frac}${zone}`);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

// Throttling and transient server trouble are worth another attempt (each attempt is re-signed).
const RETRYABLE_CODES = new Set(['RequestLimitExceeded', 'RequestLimitExceeded.UinLimitExceeded', 'InternalError', 'ResourceUnavailable']);

export class TcrApi {
  readonly endpoint: URL;
  readonly region: string;
  readonly instanceId: string;
  readonly now: () => number;
  private readonly secretId: string;
  private readonly secretKey: string;
  private readonly token: string | undefined;
  readonly transport: Transport;
  private readonly ensured = new OncePerKey<void>();

  constructor(opts: TcrApiOptions) {
    this.endpoint = new URL(opts.apiEndpoint ?? TCR_API_ENDPOINT);
    this.region = opts.region;
    this.instanceId = opts.instanceId;
    this.now = opts.now ?? Date.now;
    this.secretId = opts.secretId;
    this.secretKey = opts.secretKey;
    this.token = opts.token;
    this.transport = cloudTransport(`tcr-api ${this.endpoint.host}`, opts);
  }

  static fromConfig(tcr: TcrConfig, extra: Omit<TcrApiOptions, keyof TcrConfig> = {}): TcrApi {
    return new TcrApi({ ...extra, ...tcr });
  }

  /**
   * Calls one API action and returns `Response` without RequestId. Vendor errors become CloudApiError
   * with Error.Code, Error.Message and RequestId.
   */
  async call<T = Record<string, unknown>>(action: string, params: Record<string, unknown>): Promise<T> {
    const payload = JSON.stringify(params);
    const endpoint = this.endpoint;
    const res = await sendCloudRequest(
      this.transport,
      'tcr',
      action,
      {
        method: 'POST',
        url: new URL('/', endpoint),
        body: payload,
        // Signed again for every attempt: the signature carries a timestamp.
        auth: {
          origin: endpoint.origin,
          authorize: async () => {
            const signed = signTc3({
              secretId: this.secretId,
              secretKey: this.secretKey,
              service: 'tcr',
              host: endpoint.host,
              action,
              version: TCR_API_VERSION,
              region: this.region,
              timestamp: Math.floor(this.now() / 1000),
              payload,
              token: this.token,
            });
            const { Host: _host, ...headers } = signed.headers; // undici derives Host from the URL
            return headers;
          },
        },
      },
      (r) => RETRYABLE_CODES.has(parseTcrBody(r.text)?.Error?.Code ?? ''),
    );
    const body = parseTcrBody(res.text);
    if (!body) {
      throw new CloudApiError({ provider: 'tcr', action, status: res.status, code: 'InvalidResponse', apiMessage: `unexpected answer: ${res.text.slice(0, 200)}` });
    }
    if (body.Error) {
      // Tencent answers API errors with HTTP 200; only an unusual status is worth reporting.
      const status = res.status === 200 ? undefined : res.status;
      throw new CloudApiError({ provider: 'tcr', action, status, code: body.Error.Code, apiMessage: body.Error.Message, requestId: body.RequestId });
    }
    if (res.status >= 300) {
      throw new CloudApiError({ provider: 'tcr', action, status: res.status, code: 'InvalidResponse', requestId: body.RequestId });
    }
    const { RequestId: _id, ...rest } = body;
    return rest as T;
  }

  /** Instance access credential for `docker login` (temp: valid 1 hour; longterm: until deleted). */
  async createInstanceToken(opts: { type?: 'temp' | 'longterm'; desc?: string } = {}): Promise<TcrInstanceToken> {
    const params: Record<string, unknown> = { RegistryId: this.instanceId, TokenType: opts.type ?? 'temp' };
    if (opts.desc) params.Desc = opts.desc;
    const r = await this.call<{ Username?: string | null; Token?: string; ExpTime?: number; TokenId?: string | null }>('CreateInstanceToken', params);
    if (!r.Username || !r.Token || typeof r.ExpTime !== 'number') {
      throw new CloudApiError({ provider: 'tcr', action: 'CreateInstanceToken', code: 'InvalidResponse', apiMessage: 'answer lacks Username, Token or ExpTime' });
    }
    return { username: r.Username, password: r.Token, expiresAt: expTimeToDate(r.ExpTime), tokenId: r.TokenId ?? undefined };
  }

  /**
   * Every item of a paged listing action: Offset is the page number from 1 (the SDK's model), pages
   * are read until TotalCount items came or a page is short or empty.
   */
  async *pages<T>(action: string, params: Record<string, unknown>, listKey: string, limit = TCR_PAGE_SIZE): AsyncIterable<T> {
    let seen = 0;
    for (let page = 1; ; page++) {
      const r = await this.call<Record<string, unknown>>(action, { ...params, Limit: limit, Offset: page });
      const list = Array.isArray(r[listKey]) ? (r[listKey] as T[]) : [];
      yield* list;
      seen += list.length;
      const total = typeof r.TotalCount === 'number' ? r.TotalCount : undefined;
      if (list.length === 0 || list.length < limit || (total !== undefined && seen >= total)) return;
    }
  }

  /**
   * Whether the namespace exists in this instance (exact name match among the fuzzy filter's
   * matches, read page by page).
   */
  async describeNamespace(name: string): Promise<boolean> {
    try {
      for await (const ns of this.pages<TcrNamespaceInfo>('DescribeNamespaces', { RegistryId: this.instanceId, NamespaceName: name }, 'NamespaceList')) {
        if (ns.Name === name) return true;
      }
    } catch (err) {
      if (err instanceof CloudApiError && err.code === TcrErrorCodes.noNamespace) return false;
      throw err;
    }
    return false;
  }

  /** Repositories of the instance (or of one namespace) as "namespace/name", 100 a page. */
  async *listRepositories(namespace?: string): AsyncIterable<string> {
    const params: Record<string, unknown> = { RegistryId: this.instanceId };
    if (namespace !== undefined) params.NamespaceName = namespace;
    try {
      for await (const r of this.pages<TcrRepositoryInfo>('DescribeRepositories', params, 'RepositoryList')) {
        if (!r.Name) continue;
        // Name is the full "namespace/name" path; a bare name is prefixed with its Namespace.
        yield r.Namespace && !r.Name.startsWith(`${r.Namespace}/`) ? `${r.Namespace}/${r.Name}` : r.Name;
      }
    } catch (err) {
      if (err instanceof CloudApiError && err.code === TcrErrorCodes.noNamespace) return;
      throw err;
    }
  }

  /**
   * Every tag of one repository ("namespace/name[/more]") with its digest (DescribeImages, 100 a page).
   * A missing namespace or repository yields nothing.
   */
  async *describeImages(repository: string): AsyncIterable<TcrImageInfo> {
    const slash = repository.indexOf('/');
    if (slash <= 0) return;
    const params = { RegistryId: this.instanceId, NamespaceName: repository.slice(0, slash), RepositoryName: repository.slice(slash + 1) };
    try {
      yield* this.pages<TcrImageInfo>('DescribeImages', params, 'ImageInfoList');
    } catch (err) {
      if (err instanceof CloudApiError && (err.code === TcrErrorCodes.noNamespace || err.code === TcrErrorCodes.noRepository)) return;
      throw err;
    }
  }

  /** Creates a namespace; an existing one (ErrNamespaceExist) is success. */
  async createNamespace(name: string, isPublic = false): Promise<'created' | 'exists'> {
    try {
      await this.call('CreateNamespace', { RegistryId: this.instanceId, NamespaceName: name, IsPublic: isPublic });
      return 'created';
    } catch (err) {
      if (err instanceof CloudApiError && err.code === TcrErrorCodes.namespaceExists) return 'exists';
      throw err;
    }
  }

  /**
   * Makes sure the namespace exists (describe, then create private). Checked once per instance of
   * TcrApi: concurrent callers share one in-flight check; a failure is not remembered.
   */
  ensureNamespace(name: string): Promise<void> {
    return this.ensured.run(name, async () => {
      if (await this.describeNamespace(name)) return;
      await this.createNamespace(name, false);
    });
  }
}

interface TcrBody {
  Error?: { Code?: string; Message?: string };
  RequestId?: string;
  [key: string]: unknown;
}

function parseTcrBody(text: string): TcrBody | undefined {
  try {
    const parsed = JSON.parse(text) as { Response?: TcrBody };
    return parsed && typeof parsed.Response === 'object' && parsed.Response !== null ? parsed.Response : undefined;
  } catch {
    return undefined;
  }
}

export interface TcrCredentialOptions {
  /** Refresh this long before the token expires (default 5 minutes). */
  refreshBeforeMs?: number | undefined;
  /** Clock in ms; default the API's clock. */
  now?: (() => number) | undefined;
}

/**
 * Registry login credentials from temporary instance tokens: cached, refreshed a few minutes before
 * they expire; concurrent callers share one refresh. Use `source` where a CredentialSource is wanted.
 */
export class TcrCredentialSource {
  private cached: { token: TcrInstanceToken; refreshAt: number } | undefined;
  private refreshing: Promise<TcrInstanceToken> | undefined;
  private readonly refreshBeforeMs: number;
  private readonly now: () => number;
  /** For the registry client: `invalidate` is called when the registry or its token service refuses the token. */
  readonly source: CredentialSource = Object.assign(() => this.get(), { invalidate: () => this.invalidate() });

  constructor(
    private readonly api: Pick<TcrApi, 'createInstanceToken'> & { now?: () => number },
    opts: TcrCredentialOptions = {},
  ) {
    this.refreshBeforeMs = opts.refreshBeforeMs ?? 5 * 60_000;
    this.now = opts.now ?? api.now ?? Date.now;
  }

  async get(): Promise<Credentials> {
    const token = this.cached && this.now() < this.cached.refreshAt ? this.cached.token : await this.refresh();
    return { username: token.username, password: token.password };
  }

  /** Drops the cached token (e.g. the registry refused it); the next get() fetches a new one. */
  invalidate(): void {
    this.cached = undefined;
  }

  private refresh(): Promise<TcrInstanceToken> {
    this.refreshing ??= this.api
      .createInstanceToken({ type: 'temp' })
      .then((token) => {
        const now = this.now();
        const expires = token.expiresAt.getTime();
        // Normally refresh `refreshBeforeMs` ahead; a token living shorter than that is used for half
        // its life instead of being refetched on every call.
        this.cached = { token, refreshAt: Math.max(expires - this.refreshBeforeMs, now + (expires - now) / 2) };
        return token;
      })
      .finally(() => {
        this.refreshing = undefined;
      });
    return this.refreshing;
  }
}

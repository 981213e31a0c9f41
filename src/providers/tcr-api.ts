// Tencent Cloud TCR Enterprise management API (tcr.tencentcloudapi.com, version 2019-09-24): namespaces
// and instance access tokens, signed with TC3-HMAC-SHA256. Requests are POST / with a JSON body; every
// answer is HTTP 200 with either `Response.Error {Code, Message}` or the result, plus `RequestId`.
//
// Facts (Tencent API docs, tencentcloud-sdk-go tcr/v20190924, Harbor's tencentcr adapter):
// - CreateInstanceToken {RegistryId, TokenType: temp (1 h, default) | longterm, Desc} →
//   {Username, Token, ExpTime, TokenId?}; ExpTime is a Unix time in milliseconds (Harbor divides by 1e3).
// - DescribeNamespaces {RegistryId, NamespaceName, Limit, Offset} → {NamespaceList[].Name, TotalCount};
//   the name filter is not an exact match (Harbor compares names itself), so we do too.
// - CreateNamespace {RegistryId, NamespaceName, IsPublic}; Harbor creates namespaces private.
import type { Credentials, CredentialSource } from '../registry/auth.js';
import type { RegistryConfig } from '../config/schema.js';
import { CloudApiError } from './cloud-error.js';
import { OncePerKey, sendCloudRequest, type CloudHttpOptions } from './cloud-http.js';
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
  private readonly http: CloudHttpOptions;
  private readonly ensured = new OncePerKey<void>();

  constructor(opts: TcrApiOptions) {
    this.endpoint = new URL(opts.apiEndpoint ?? TCR_API_ENDPOINT);
    this.region = opts.region;
    this.instanceId = opts.instanceId;
    this.now = opts.now ?? Date.now;
    this.secretId = opts.secretId;
    this.secretKey = opts.secretKey;
    this.token = opts.token;
    this.http = { dispatcher: opts.dispatcher, timeoutMs: opts.timeoutMs, retries: opts.retries, retryDelayMs: opts.retryDelayMs };
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
    const res = await sendCloudRequest(
      'tcr',
      action,
      () => {
        const signed = signTc3({
          secretId: this.secretId,
          secretKey: this.secretKey,
          service: 'tcr',
          host: this.endpoint.host,
          action,
          version: TCR_API_VERSION,
          region: this.region,
          timestamp: Math.floor(this.now() / 1000),
          payload,
          token: this.token,
        });
        const { Host: _host, ...headers } = signed.headers; // undici derives Host from the URL
        return { method: 'POST', url: new URL('/', this.endpoint), headers, body: payload };
      },
      this.http,
      (r) => r.status === 429 || r.status >= 500 || RETRYABLE_CODES.has(parseTcrBody(r.text)?.Error?.Code ?? ''),
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
    return { username: r.Username, password: r.Token, expiresAt: new Date(r.ExpTime), tokenId: r.TokenId ?? undefined };
  }

  /**
   * Whether the namespace exists in this instance (exact name match). One page of 100 matches is
   * read: a false "no" (more than 100 fuzzy matches) is harmless, creating then answers
   * ErrNamespaceExist, which counts as success.
   */
  async describeNamespace(name: string): Promise<boolean> {
    let list: TcrNamespaceInfo[];
    try {
      const r = await this.call<{ NamespaceList?: TcrNamespaceInfo[] | null; TotalCount?: number }>('DescribeNamespaces', {
        RegistryId: this.instanceId,
        NamespaceName: name,
        Limit: 100,
        Offset: 0,
      });
      list = r.NamespaceList ?? [];
    } catch (err) {
      if (err instanceof CloudApiError && err.code === TcrErrorCodes.noNamespace) return false;
      throw err;
    }
    return list.some((ns) => ns.Name === name);
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
  readonly source: CredentialSource = () => this.get();

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

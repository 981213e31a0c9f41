// Huawei Cloud / Open Telekom Cloud SWR (basic edition) organization management.
//
// Two ways to create an organization ("namespace"):
// - SwrApi: the documented management API, AK/SK signed (SDK-HMAC-SHA256):
//   POST /v2/manage/namespaces {"namespace": name} → 201 created, 409 exists (names are unique per
//   region, so possibly another tenant's), 400 invalid name or over quota (5 by default), 401 auth;
//   GET /v2/manage/namespaces/{name} → 200 visible to us, 404 not.
//   Errors: SWR answers `[{"errorCode","errorMessage","detail"}]` (an array); the API gateway in
//   front answers `{"error_code","error_msg","request_id"}` (e.g. APIGW.0301 for a bad signature).
// - SwrDockyard: what Harbor's Huawei adapter does with only registry credentials (Basic auth against
//   the registry host): GET /dockyard/v2/namespaces/{ns}, then POST /dockyard/v2/namespaces
//   {"namespace": ns}. Undocumented; Harbor treats any 2xx as success and a GET answer whose `name`
//   differs from the namespace (e.g. `{}`) as "missing", so we do too (and also accept 404 / 409).
import type { Credentials } from '../registry/auth.js';
import type { RegistryConfig } from '../config/schema.js';
import { CloudApiError } from './cloud-error.js';
import { OncePerKey, sendCloudRequest, type CloudHttpOptions, type CloudResponse } from './cloud-http.js';
import { sdkDate, signSdkHmac, swrLoginPassword, swrLoginUsername } from './swr-signer.js';

type SwrConfig = NonNullable<RegistryConfig['swr']>;
export type SwrCloud = 'huaweicloud' | 'otc';

/**
 * Default management API endpoint. Huawei: swr-api.<region>.myhuaweicloud.com (Huawei docs and SDKs).
 * OTC: swr-api.<region>.otc.t-systems.com — not in OTC's docs (they say "from the IAM catalog"), but
 * it is what gophertelekomcloud derives (the SMN endpoint with "smn" replaced by "swr-api"). Set
 * `swr.apiEndpoint` in the config to override either.
 */
export function swrApiEndpoint(region: string, cloud: SwrCloud = 'huaweicloud'): string {
  return cloud === 'otc' ? `https://swr-api.${region}.otc.t-systems.com` : `https://swr-api.${region}.myhuaweicloud.com`;
}

/**
 * Registry login for an SWR registry: explicit username/password when both are configured (they were
 * written on purpose), else the long-term login derived from AK/SK; undefined when neither is set.
 */
export function swrCredentials(config: Pick<RegistryConfig, 'username' | 'password' | 'swr'>): Credentials | undefined {
  if (config.username !== undefined && config.password !== undefined) return { username: config.username, password: config.password };
  const swr = config.swr;
  if (swr?.accessKey && swr.secretKey) return { username: swrLoginUsername(swr.region, swr.accessKey), password: swrLoginPassword(swr.accessKey, swr.secretKey) };
  return undefined;
}

/** Pulls code / message / request id out of either SWR error shape; anything else is kept as text. */
export function parseSwrError(text: string): { code?: string; message?: string; requestId?: string } {
  try {
    const parsed = JSON.parse(text) as unknown;
    const e = (Array.isArray(parsed) ? parsed[0] : parsed) as Record<string, unknown> | undefined;
    if (e && typeof e === 'object') {
      const pick = (...keys: string[]) => keys.map((k) => e[k]).find((v): v is string => typeof v === 'string' && v !== '');
      const out: { code?: string; message?: string; requestId?: string } = {};
      const code = pick('errorCode', 'error_code', 'code');
      const message = pick('errorMessage', 'error_msg', 'message', 'detail');
      const requestId = pick('request_id', 'requestId');
      if (code) out.code = code;
      if (message) out.message = message;
      if (requestId) out.requestId = requestId;
      if (code || message) return out;
    }
  } catch {
    // not JSON
  }
  const trimmed = text.trim();
  return trimmed ? { message: trimmed.slice(0, 300) } : {};
}

function swrError(action: string, res: CloudResponse): CloudApiError {
  const e = parseSwrError(res.text);
  const header = res.headers['x-request-id'];
  return new CloudApiError({
    provider: 'swr',
    action,
    status: res.status,
    code: e.code,
    apiMessage: e.message,
    requestId: e.requestId ?? (Array.isArray(header) ? header[0] : header),
  });
}

export interface SwrApiOptions extends CloudHttpOptions {
  region: string;
  accessKey: string;
  secretKey: string;
  cloud?: SwrCloud | undefined;
  apiEndpoint?: string | undefined;
  /** X-Project-Id; only needed for multi-project accounts. */
  projectId?: string | undefined;
  /** Clock in ms (tests); default Date.now. */
  now?: (() => number) | undefined;
}

export class SwrApi {
  readonly endpoint: URL;
  readonly region: string;
  private readonly accessKey: string;
  private readonly secretKey: string;
  private readonly projectId: string | undefined;
  private readonly now: () => number;
  private readonly http: CloudHttpOptions;
  private readonly ensured = new OncePerKey<void>();

  constructor(opts: SwrApiOptions) {
    if (!opts.accessKey || !opts.secretKey) throw new Error('SWR API calls need swr.accessKey and swr.secretKey');
    this.region = opts.region;
    this.endpoint = new URL(opts.apiEndpoint ?? swrApiEndpoint(opts.region, opts.cloud));
    this.accessKey = opts.accessKey;
    this.secretKey = opts.secretKey;
    this.projectId = opts.projectId;
    this.now = opts.now ?? Date.now;
    this.http = { dispatcher: opts.dispatcher, timeoutMs: opts.timeoutMs, retries: opts.retries, retryDelayMs: opts.retryDelayMs };
  }

  /** From the registry's `swr` config block (which must carry accessKey and secretKey). */
  static fromConfig(swr: SwrConfig, extra: Omit<SwrApiOptions, 'region' | 'accessKey' | 'secretKey' | 'cloud' | 'apiEndpoint'> = {}): SwrApi {
    return new SwrApi({ ...extra, region: swr.region, accessKey: swr.accessKey ?? '', secretKey: swr.secretKey ?? '', cloud: swr.cloud, apiEndpoint: swr.apiEndpoint });
  }

  private send(method: 'GET' | 'POST', path: string, body?: unknown): Promise<CloudResponse> {
    const url = new URL(path, this.endpoint);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return sendCloudRequest('swr', `${method} ${url.pathname}`, () => {
      const headers: Record<string, string> = { Host: url.host, 'X-Sdk-Date': sdkDate(new Date(this.now())) };
      if (this.projectId) headers['X-Project-Id'] = this.projectId;
      if (payload !== undefined) headers['Content-Type'] = 'application/json;charset=utf-8';
      const signed = signSdkHmac({ accessKey: this.accessKey, secretKey: this.secretKey, method, url, headers, body: payload });
      const { Host: _host, ...rest } = headers; // undici derives Host from the URL (the same value)
      return { method, url, headers: { ...rest, ...signed.headers }, body: payload };
    }, this.http);
  }

  /** Whether the organization exists and is visible to these credentials. */
  async describeNamespace(name: string): Promise<boolean> {
    const res = await this.send('GET', `/v2/manage/namespaces/${encodeURIComponent(name)}`);
    if (res.status === 200) return true;
    if (res.status === 404) return false;
    throw swrError('GET /v2/manage/namespaces/{namespace}', res);
  }

  /** Creates an organization: 201 → created, 409 → exists (maybe not ours: see ensureNamespace). */
  async createNamespace(name: string): Promise<'created' | 'exists'> {
    const res = await this.send('POST', '/v2/manage/namespaces', { namespace: name });
    if (res.status === 201 || res.status === 200) return 'created';
    if (res.status === 409) return 'exists';
    throw swrError('POST /v2/manage/namespaces', res);
  }

  /**
   * Makes sure the organization exists and is ours, once per SwrApi instance (concurrent callers share
   * one check). Organization names are unique per region across tenants, so "exists" on create while
   * we cannot see it means another tenant owns it: pushing there would only fail later with DENIED.
   */
  ensureNamespace(name: string): Promise<void> {
    return this.ensured.run(name, async () => {
      let visible: boolean | undefined;
      try {
        visible = await this.describeNamespace(name);
      } catch (err) {
        // An IAM user may lack swr:namespace:get but hold create; only auth failures are final here.
        if (err instanceof CloudApiError && (err.status === 401 || err.isUnreachable)) throw err;
      }
      if (visible) return;
      if ((await this.createNamespace(name)) === 'created') return;
      // 409: created concurrently by us (visible now), or owned by someone else.
      if (visible === false && !(await this.describeNamespace(name))) {
        throw new CloudApiError({
          provider: 'swr',
          action: 'POST /v2/manage/namespaces',
          status: 409,
          code: 'NamespaceOwnedElsewhere',
          apiMessage: `organization "${name}" already exists in region ${this.region} but is not visible to these credentials (organization names are unique per region across tenants): choose another destinationNamespace or get permissions on it`,
        });
      }
    });
  }
}

export interface SwrDockyardOptions extends CloudHttpOptions {
  /** The registry URL, e.g. https://swr.eu-de.otc.t-systems.com. */
  registryUrl: string;
  username: string;
  password: string;
}

/** Organization management through the registry host with Basic auth (Harbor's Huawei adapter). */
export class SwrDockyard {
  private readonly base: URL;
  private readonly authorization: string;
  private readonly http: CloudHttpOptions;
  private readonly ensured = new OncePerKey<void>();

  constructor(opts: SwrDockyardOptions) {
    this.base = new URL(opts.registryUrl);
    this.authorization = `Basic ${Buffer.from(`${opts.username}:${opts.password}`).toString('base64')}`;
    this.http = { dispatcher: opts.dispatcher, timeoutMs: opts.timeoutMs, retries: opts.retries, retryDelayMs: opts.retryDelayMs };
  }

  private send(method: 'GET' | 'POST', path: string, action: string, body?: unknown): Promise<CloudResponse> {
    const url = new URL(path, this.base);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return sendCloudRequest('swr', action, () => ({
      method,
      url,
      headers: { Authorization: this.authorization, 'Content-Type': 'application/json; charset=utf-8' },
      body: payload,
    }), this.http);
  }

  async describeNamespace(name: string): Promise<boolean> {
    const res = await this.send('GET', `/dockyard/v2/namespaces/${encodeURIComponent(name)}`, 'dockyard GET namespace');
    if (res.status === 404) return false;
    if (res.status < 200 || res.status >= 300) throw swrError('dockyard GET namespace', res);
    try {
      return (JSON.parse(res.text) as { name?: unknown }).name === name;
    } catch {
      return false;
    }
  }

  async createNamespace(name: string): Promise<'created' | 'exists'> {
    const res = await this.send('POST', '/dockyard/v2/namespaces', 'dockyard POST namespace', { namespace: name });
    if (res.status === 409) return 'exists';
    if (res.status < 200 || res.status >= 300) throw swrError('dockyard POST namespace', res);
    return 'created';
  }

  /** Describe, then create when missing; once per instance, concurrent callers share one check. */
  ensureNamespace(name: string): Promise<void> {
    return this.ensured.run(name, async () => {
      if (await this.describeNamespace(name)) return;
      await this.createNamespace(name);
    });
  }
}

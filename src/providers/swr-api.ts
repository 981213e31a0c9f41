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
import { basicAuthorizer } from '../http/auth.js';
import type { Transport } from '../http/transport.js';
import type { Authorizer } from '../http/types.js';
import { OncePerKey, cloudTransport, sendCloudRequest, type CloudHttpOptions, type CloudResponse } from './cloud-http.js';
import { sdkDate, signSdkHmac, swrLoginPassword, swrLoginUsername } from './swr-signer.js';

type SwrConfig = NonNullable<RegistryConfig['swr']>;
export type SwrCloud = 'huaweicloud' | 'otc';

/**
 * Huawei Cloud SWR API hosts by region: the table of the official SDK (@huaweicloud/huaweicloud-sdk-swr
 * v2/SwrRegion.js, all its regions). Note eu-west-101 (Huawei Cloud Europe), whose hosts live under
 * myhuaweicloud.eu.
 */
export const HUAWEICLOUD_SWR_ENDPOINTS: Readonly<Record<string, string>> = Object.freeze({
  'af-south-1': 'https://swr-api.af-south-1.myhuaweicloud.com',
  'ap-southeast-1': 'https://swr-api.ap-southeast-1.myhuaweicloud.com',
  'ap-southeast-2': 'https://swr-api.ap-southeast-2.myhuaweicloud.com',
  'ap-southeast-3': 'https://swr-api.ap-southeast-3.myhuaweicloud.com',
  'ap-southeast-5': 'https://swr-api.ap-southeast-5.myhuaweicloud.com',
  'ae-ad-1': 'https://swr-api.ae-ad-1.myhuaweicloud.com',
  'cn-east-2': 'https://swr-api.cn-east-2.myhuaweicloud.com',
  'cn-east-3': 'https://swr-api.cn-east-3.myhuaweicloud.com',
  'cn-north-1': 'https://swr-api.cn-north-1.myhuaweicloud.com',
  'cn-north-2': 'https://swr-api.cn-north-2.myhuaweicloud.com',
  'cn-north-4': 'https://swr-api.cn-north-4.myhuaweicloud.com',
  'cn-north-9': 'https://swr-api.cn-north-9.myhuaweicloud.com',
  'cn-north-11': 'https://swr-api.cn-north-11.myhuaweicloud.com',
  'cn-south-1': 'https://swr-api.cn-south-1.myhuaweicloud.com',
  'cn-south-2': 'https://swr-api.cn-south-2.myhuaweicloud.com',
  'cn-southwest-2': 'https://swr-api.cn-southwest-2.myhuaweicloud.com',
  'eu-west-0': 'https://swr-api.eu-west-0.myhuaweicloud.com',
  'eu-west-101': 'https://swr-api.eu-west-101.myhuaweicloud.eu',
  'la-north-2': 'https://swr-api.la-north-2.myhuaweicloud.com',
  'la-south-2': 'https://swr-api.la-south-2.myhuaweicloud.com',
  'me-east-1': 'https://swr-api.me-east-1.myhuaweicloud.com',
  'my-kualalumpur-1': 'https://swr-api.my-kualalumpur-1.myhuaweicloud.com',
  'na-mexico-1': 'https://swr-api.na-mexico-1.myhuaweicloud.com',
  'ru-moscow-1': 'https://swr-api.ru-moscow-1.myhuaweicloud.com',
  'ru-northwest-2': 'https://swr-api.ru-northwest-2.myhuaweicloud.com',
  'sa-brazil-1': 'https://swr-api.sa-brazil-1.myhuaweicloud.com',
  'tr-west-1': 'https://swr-api.tr-west-1.myhuaweicloud.com',
});

/**
 * Open Telekom Cloud hosts by region. OTC's API docs name no SWR host ("take it from the IAM
 * catalog"); eu-de and eu-nl are what gophertelekomcloud derives (the service name in front of
 * <region>.otc.t-systems.com) and what OTC's catalog lists. eu-ch2 (Swiss OTC) lives under
 * sc.otc.t-systems.com, like its IAM host iam-pub.eu-ch2.sc.otc.t-systems.com in OTC's docs
 * (docs.otc.t-systems.com, "API Authentication"). IAM: iam.eu-de.otc.t-systems.com per the same page.
 */
export const OTC_SWR_ENDPOINTS: Readonly<Record<string, { swr: string; iam: string }>> = Object.freeze({
  'eu-de': { swr: 'https://swr-api.eu-de.otc.t-systems.com', iam: 'https://iam.eu-de.otc.t-systems.com' },
  'eu-nl': { swr: 'https://swr-api.eu-nl.otc.t-systems.com', iam: 'https://iam.eu-nl.otc.t-systems.com' },
  'eu-ch2': { swr: 'https://swr-api.eu-ch2.sc.otc.t-systems.com', iam: 'https://iam-pub.eu-ch2.sc.otc.t-systems.com' },
});

/** The Huawei SDK's IAM endpoint when none is configured (core utils/constant.js DEFAULT_IAM_ENDPOINT). */
export const HUAWEICLOUD_IAM_ENDPOINT = 'https://iam.myhuaweicloud.com';

/**
 * Default management API endpoint: the region tables above; a region they do not know gets the
 * cloud's naming pattern (swr-api.<region>.myhuaweicloud.com / .otc.t-systems.com). Set
 * `swr.apiEndpoint` in the config to override either.
 */
export function swrApiEndpoint(region: string, cloud: SwrCloud = 'huaweicloud'): string {
  if (cloud === 'otc') return OTC_SWR_ENDPOINTS[region]?.swr ?? `https://swr-api.${region}.otc.t-systems.com`;
  return HUAWEICLOUD_SWR_ENDPOINTS[region] ?? `https://swr-api.${region}.myhuaweicloud.com`;
}

/**
 * IAM endpoint for the project-id look-up: Huawei's global IAM (the SDK's default; Huawei Cloud
 * Europe's regions use their own site, iam.<region>.myhuaweicloud.eu), OTC's regional IAM.
 */
export function swrIamEndpoint(region: string, cloud: SwrCloud = 'huaweicloud'): string {
  if (cloud === 'otc') return OTC_SWR_ENDPOINTS[region]?.iam ?? `https://iam.${region}.otc.t-systems.com`;
  return swrApiEndpoint(region, cloud).endsWith('.myhuaweicloud.eu') ? `https://iam.${region}.myhuaweicloud.eu` : HUAWEICLOUD_IAM_ENDPOINT;
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

/**
 * Pulls code / message / request id out of the error shapes: `{error_code, error_msg}` (SWR and the API
 * gateway) and `{error: {code, message}}` (IAM), as the Huawei core SDK reads them
 * (exception/ExceptionUtil.js), plus the `[{errorCode, errorMessage}]` arrays older SWR answers carry.
 * Anything else is kept as text.
 */
export function parseSwrError(text: string): { code?: string; message?: string; requestId?: string } {
  try {
    const parsed = JSON.parse(text) as unknown;
    let e = (Array.isArray(parsed) ? parsed[0] : parsed) as Record<string, unknown> | undefined;
    if (e && typeof e === 'object' && e.error && typeof e.error === 'object') e = { ...(e.error as Record<string, unknown>), request_id: e.request_id };
    if (e && typeof e === 'object') {
      const pick = (...keys: string[]) => keys.map((k) => e![k]).find((v): v is string => typeof v === 'string' && v !== '');
      const out: { code?: string; message?: string; requestId?: string } = {};
      const code = pick('error_code', 'errorCode', 'code');
      const message = pick('error_msg', 'errorMessage', 'message', 'detail');
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
    // The core SDK takes the request id from X-Request-Id; the body's request_id is the fallback.
    requestId: (Array.isArray(header) ? header[0] : header) ?? e.requestId,
  });
}

export interface SwrApiOptions extends CloudHttpOptions {
  region: string;
  accessKey: string;
  secretKey: string;
  cloud?: SwrCloud | undefined;
  apiEndpoint?: string | undefined;
  /** X-Project-Id; when absent it is looked up from IAM (the project named after the region), as the SDK does. */
  projectId?: string | undefined;
  /** IAM endpoint for that look-up (default: swrIamEndpoint(region, cloud)). */
  iamEndpoint?: string | undefined;
  /** Clock in ms (tests); default Date.now. */
  now?: (() => number) | undefined;
}

/** SWR's ShowReposTagResp (GET /v2/manage/namespaces/{namespace}/repos/{repository}/tags): fields Ferry reads. */
export interface SwrTagInfo {
  Tag?: string;
  digest?: string;
  size?: number;
  created?: string;
  updated?: string;
  [key: string]: unknown;
}

/** SWR's ShowReposResp (GET /v2/manage/repos): fields Ferry reads. */
export interface SwrRepositoryInfo {
  name?: string;
  namespace?: string;
  num_images?: number;
  tags?: string[] | null;
  [key: string]: unknown;
}

/** Items per page of the SWR listings. */
export const SWR_PAGE_SIZE = 100;

/** `Content-Range: <first>-<last>/<total>` of the SWR listings: the total, when present. */
export function contentRangeTotal(value: string | string[] | undefined): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  const m = v ? /(\d+)\s*$/.exec(v.split('/').pop() ?? '') : null;
  return m ? Number(m[1]) : undefined;
}

/** SWR's repository path segment: a "/" inside the name is written "$" (SWR API docs). */
function swrRepoSegment(name: string): string {
  return encodeURIComponent(name.replace(/\//g, '$'));
}

export class SwrApi {
  readonly endpoint: URL;
  readonly iamEndpoint: URL;
  readonly region: string;
  private readonly accessKey: string;
  private readonly secretKey: string;
  private readonly projectId: OncePerKey<string> = new OncePerKey<string>();
  private readonly configuredProjectId: string | undefined;
  private readonly now: () => number;
  readonly transport: Transport;
  private readonly ensured = new OncePerKey<void>();

  constructor(opts: SwrApiOptions) {
    if (!opts.accessKey || !opts.secretKey) throw new Error('SWR API calls need swr.accessKey and swr.secretKey');
    this.region = opts.region;
    this.endpoint = new URL(opts.apiEndpoint ?? swrApiEndpoint(opts.region, opts.cloud));
    this.iamEndpoint = new URL(opts.iamEndpoint ?? swrIamEndpoint(opts.region, opts.cloud));
    this.accessKey = opts.accessKey;
    this.secretKey = opts.secretKey;
    this.configuredProjectId = opts.projectId;
    this.now = opts.now ?? Date.now;
    this.transport = cloudTransport(`swr-api ${this.endpoint.host}`, opts);
  }

  /** From the registry's `swr` config block (which must carry accessKey and secretKey). */
  static fromConfig(swr: SwrConfig, extra: Omit<SwrApiOptions, 'region' | 'accessKey' | 'secretKey' | 'cloud' | 'apiEndpoint' | 'projectId' | 'iamEndpoint'> = {}): SwrApi {
    return new SwrApi({
      ...extra,
      region: swr.region,
      accessKey: swr.accessKey ?? '',
      secretKey: swr.secretKey ?? '',
      cloud: swr.cloud,
      apiEndpoint: swr.apiEndpoint,
      projectId: swr.projectId,
      iamEndpoint: swr.iamEndpoint,
    });
  }

  /**
   * The project id sent as X-Project-Id: configured, or looked up once from IAM as the SDK does
   * (GET /v3/projects?name=<region>, AK/SK signed; exactly one project of that name). The SDK would
   * then create a missing project; Ferry does not create projects and says what to configure.
   */
  getProjectId(): Promise<string> {
    if (this.configuredProjectId) return Promise.resolve(this.configuredProjectId);
    return this.projectId.run('', async () => {
      const url = new URL('/v3/projects', this.iamEndpoint);
      url.searchParams.set('name', this.region);
      const action = 'IAM GET /v3/projects';
      const res = await this.signedSend('GET', url, action, undefined, undefined);
      if (res.status !== 200) throw swrError(action, res);
      let projects: { id?: unknown; name?: unknown }[] = [];
      try {
        const body = JSON.parse(res.text) as { projects?: unknown };
        if (Array.isArray(body.projects)) projects = body.projects as typeof projects;
      } catch {
        throw new CloudApiError({ provider: 'swr', action, status: res.status, code: 'InvalidResponse', apiMessage: 'IAM answered no JSON' });
      }
      const mine = projects.filter((p) => p.name === this.region && typeof p.id === 'string');
      if (mine.length !== 1) {
        throw new CloudApiError({
          provider: 'swr',
          action,
          status: res.status,
          code: 'ProjectNotFound',
          apiMessage: `${mine.length === 0 ? 'no' : 'more than one'} IAM project named "${this.region}" at ${this.iamEndpoint.origin}: set swr.projectId (or swr.iamEndpoint)`,
        });
      }
      return mine[0]!.id as string;
    });
  }

  /**
   * One AK/SK-signed JSON request, as the SDK sends it: Content-Type application/json, X-Sdk-Date,
   * Host and (for SWR calls) X-Project-Id, all of them signed.
   */
  private signedSend(method: 'GET' | 'POST', url: URL, action: string, payload: string | undefined, projectId: string | undefined): Promise<CloudResponse> {
    // Signed again for every attempt (X-Sdk-Date), by an Authorizer bound to the URL's origin.
    const auth: Authorizer = {
      origin: url.origin,
      authorize: async () => {
        const headers: Record<string, string> = { 'Content-Type': 'application/json', Host: url.host, 'X-Sdk-Date': sdkDate(new Date(this.now())) };
        if (projectId) headers['X-Project-Id'] = projectId;
        const signed = signSdkHmac({ accessKey: this.accessKey, secretKey: this.secretKey, method, url, headers, body: payload, signedHeaders: Object.keys(headers) });
        const { Host: _host, ...rest } = headers; // undici derives Host from the URL (the same value)
        return { ...rest, ...signed.headers };
      },
    };
    return sendCloudRequest(this.transport, 'swr', action, { method, url, body: payload, auth });
  }

  private async send(method: 'GET' | 'POST', path: string, body?: unknown, action?: string): Promise<CloudResponse> {
    const url = new URL(path, this.endpoint);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return this.signedSend(method, url, action ?? `${method} ${url.pathname}`, payload, await this.getProjectId());
  }

  /** Items of an SWR listing, `limit` + `offset` (an item index) together, until Content-Range's total. */
  private async *pages<T>(path: string, query: Record<string, string>, action: string, notFound: 'empty' | 'throw'): AsyncIterable<T> {
    for (let offset = 0; ; ) {
      const params = new URLSearchParams({ ...query, limit: String(SWR_PAGE_SIZE), offset: String(offset) });
      const res = await this.send('GET', `${path}?${params}`, undefined, action);
      if (res.status === 404 && notFound === 'empty') return;
      if (res.status !== 200) throw swrError(action, res);
      let list: T[];
      try {
        const parsed = JSON.parse(res.text) as unknown;
        list = Array.isArray(parsed) ? (parsed as T[]) : [];
      } catch {
        throw new CloudApiError({ provider: 'swr', action, status: res.status, code: 'InvalidResponse', apiMessage: `expected a JSON array: ${res.text.slice(0, 200)}` });
      }
      yield* list;
      offset += list.length;
      const total = contentRangeTotal(res.headers['content-range']);
      if (list.length === 0 || list.length < SWR_PAGE_SIZE || (total !== undefined && offset >= total)) return;
    }
  }

  /**
   * Every tag of a repository ("organization/name") with its digest, oldest first
   * (order_column=updated_at, so tags pushed during the listing do not shift the pages read).
   * A missing organization or repository yields nothing.
   */
  async *listRepositoryTags(repository: string): AsyncIterable<SwrTagInfo> {
    const slash = repository.indexOf('/');
    if (slash <= 0) return;
    const path = `/v2/manage/namespaces/${encodeURIComponent(repository.slice(0, slash))}/repos/${swrRepoSegment(repository.slice(slash + 1))}/tags`;
    yield* this.pages<SwrTagInfo>(path, { order_column: 'updated_at', order_type: 'asc' }, 'GET /v2/manage/namespaces/{namespace}/repos/{repository}/tags', 'empty');
  }

  /** Repositories (of one organization, or all visible), as "organization/name". */
  async *listRepositories(namespace?: string): AsyncIterable<string> {
    const query: Record<string, string> = namespace !== undefined ? { namespace } : {};
    for await (const r of this.pages<SwrRepositoryInfo>('/v2/manage/repos', query, 'GET /v2/manage/repos', 'throw')) {
      if (!r.name) continue;
      yield r.namespace && !r.name.startsWith(`${r.namespace}/`) ? `${r.namespace}/${r.name}` : r.name;
    }
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
  private readonly auth: Authorizer;
  readonly transport: Transport;
  private readonly ensured = new OncePerKey<void>();

  constructor(opts: SwrDockyardOptions) {
    this.base = new URL(opts.registryUrl);
    this.auth = basicAuthorizer(this.base.origin, { username: opts.username, password: opts.password });
    this.transport = cloudTransport(`swr-dockyard ${this.base.host}`, opts);
  }

  private send(method: 'GET' | 'POST', path: string, action: string, body?: unknown): Promise<CloudResponse> {
    const url = new URL(path, this.base);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return sendCloudRequest(this.transport, 'swr', action, { method, url, headers: { 'Content-Type': 'application/json; charset=utf-8' }, body: payload, auth: this.auth });
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

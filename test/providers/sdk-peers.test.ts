// The vendors' official SDKs as test peers (dev dependencies only): their own requests must pass the
// project's TCR / SWR stubs (so the stubs verify what the real gateways verify), the stubs must answer
// in the SDKs' response models, and Ferry's signers must produce the SDKs' signatures for a table of
// requests.
//   - Tencent: tencentcloud-sdk-nodejs (services/tcr/v20190924, common/sign.js)
//   - Huawei:  @huaweicloud/huaweicloud-sdk-core (AKSKSigner, BasicCredentials, IAM project look-up)
//              and @huaweicloud/huaweicloud-sdk-swr (SwrClient)
import { Agent as HttpAgent } from 'node:http';
import { connect } from 'node:net';
import { createRequire } from 'node:module';
import { afterEach, describe, expect, it } from 'vitest';
import { signTc3 } from '../../src/providers/tc3-signer.js';
import { signSdkHmac } from '../../src/providers/swr-signer.js';
import { SwrApi } from '../../src/providers/swr-api.js';
import { TcrApi } from '../../src/providers/tcr-api.js';
import { startSwrStub, startTcrStub, swrStubProjectId, type SwrStub, type TcrStub } from '../helpers/cloud-stubs.js';

const require = createRequire(import.meta.url);
// Deep requires keep the 59 MB Tencent SDK from loading every service.
const { Client: TcrClient } = require('tencentcloud-sdk-nodejs/tencentcloud/services/tcr/v20190924/tcr_client.js') as {
  Client: new (cfg: unknown) => Record<string, (req: Record<string, unknown>) => Promise<Record<string, unknown>>>;
};
const TcSign = (require('tencentcloud-sdk-nodejs/tencentcloud/common/sign.js') as { default: { sign3(input: Record<string, unknown>): string } }).default;
const huaweiCore = require('@huaweicloud/huaweicloud-sdk-core') as typeof import('@huaweicloud/huaweicloud-sdk-core');
const huaweiSwr = require('@huaweicloud/huaweicloud-sdk-swr') as typeof import('@huaweicloud/huaweicloud-sdk-swr');
// The core SDK logs every error answer to stdout through log4js; the tests provoke some on purpose.
(require('@huaweicloud/huaweicloud-sdk-core/logger/log4jLogger.js') as { Logger4jInstance: { level: string } }).Logger4jInstance.level = 'off';
const { AKSKSigner } = require('@huaweicloud/huaweicloud-sdk-core/auth/AKSKSigner.js') as {
  AKSKSigner: { sign(request: Record<string, unknown>, credential: { getAk(): string; getSk(): string }): Record<string, string> };
};

/** An http.Agent that sends every request to one loopback port, so an SDK can keep its real API host name. */
function loopbackAgent(url: string): HttpAgent {
  const port = Number(new URL(url).port);
  const agent = new HttpAgent({ keepAlive: false });
  (agent as unknown as { createConnection: () => unknown }).createConnection = () => connect(port, '127.0.0.1');
  return agent;
}

const TC = { secretId: 'AKIDsdkpeer0000000000000000000000000', secretKey: 'sdk-peer-secret-key-000000000000', instanceId: 'tcr-peer0001', region: 'ap-guangzhou' };

describe('Tencent TCR: the official Node SDK against the TCR stub', () => {
  let stub: TcrStub;
  afterEach(async () => stub?.close());

  function sdkClient(): Record<string, (req: Record<string, unknown>) => Promise<Record<string, unknown>>> {
    return new TcrClient({
      credential: { secretId: TC.secretId, secretKey: TC.secretKey },
      region: TC.region,
      // The real host name (the SDK derives the signing service from its first label); the agent
      // delivers the bytes to the stub.
      profile: { httpProfile: { endpoint: 'tcr.tencentcloudapi.com', protocol: 'http://', agent: loopbackAgent(stub.url), reqTimeout: 10 } },
    });
  }

  it("the SDK's own signed requests are accepted and answered in its response models", async () => {
    const images = Array.from({ length: 45 }, (_, i) => ({ tag: `v${i}`, digest: `sha256:${String(i).padStart(64, 'a')}`, size: 10 + i, updateTime: new Date(Date.UTC(2024, 1, 1) + i * 3_600_000).toISOString() }));
    stub = await startTcrStub({ ...TC, namespaces: ['existing'], images: { 'team/app': images } });
    const sdk = sdkClient();

    const created = await sdk.CreateNamespace!({ RegistryId: TC.instanceId, NamespaceName: 'from-sdk', IsPublic: false });
    expect(created.RequestId).toBeTruthy();
    const ns = await sdk.DescribeNamespaces!({ RegistryId: TC.instanceId, NamespaceName: 'from', Limit: 20, Offset: 1 });
    expect(ns).toMatchObject({ TotalCount: 1, NamespaceList: [{ Name: 'from-sdk', Public: false }] });

    const repos = await sdk.DescribeRepositories!({ RegistryId: TC.instanceId, NamespaceName: 'team', Limit: 100, Offset: 1 });
    expect(repos).toMatchObject({ TotalCount: 1, RepositoryList: [{ Name: 'team/app', Namespace: 'team' }] });
    expect(String((repos.RepositoryList as { CreationTime: string }[])[0]!.CreationTime)).toMatch(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{9} \+0000 UTC$/);

    // "limit 20 offset 2 = items 21-40": Offset is a page number from 1.
    const page2 = await sdk.DescribeImages!({ RegistryId: TC.instanceId, NamespaceName: 'team', RepositoryName: 'app', Limit: 20, Offset: 2 });
    const list = page2.ImageInfoList as { ImageVersion: string; Digest: string; Size: number; UpdateTime: string; Kind: string }[];
    expect(page2.TotalCount).toBe(45);
    expect(list).toHaveLength(20);
    expect(list[0]).toMatchObject({ ImageVersion: 'v24', Digest: images[24]!.digest, Size: 34, Kind: 'image' }); // newest first: v44..v25 on page 1

    const token = await sdk.CreateInstanceToken!({ RegistryId: TC.instanceId, TokenType: 'temp' });
    expect(token).toMatchObject({ Username: expect.any(String), Token: expect.any(String), ExpTime: expect.any(Number) });

    expect(stub.requests.every((r) => r.authorized && !r.errorCode)).toBe(true);
    // What the SDK sends, Ferry sends: exactly this content type.
    expect(new Set(stub.requests.map((r) => r.headers['content-type']))).toEqual(new Set(['application/json']));
  });

  it("refuses the SDK's requests signed with a wrong key, as the cloud does", async () => {
    stub = await startTcrStub({ ...TC, secretKey: 'another-key' });
    await expect(sdkClient().DescribeNamespaces!({ RegistryId: TC.instanceId })).rejects.toMatchObject({ code: 'AuthFailure.SignatureFailure' });
  });

  it('Ferry and the SDK read the same pages', async () => {
    const images = Array.from({ length: 130 }, (_, i) => ({ tag: `t${i}`, digest: `sha256:${String(i).padStart(64, 'b')}` }));
    stub = await startTcrStub({ ...TC, images: { 'ns/repo': images } });
    const ferry = new TcrApi({ ...TC, apiEndpoint: stub.url, retries: 0 });
    const seen: string[] = [];
    for await (const i of ferry.describeImages('ns/repo')) seen.push(i.ImageVersion!);
    const sdk = sdkClient();
    const viaSdk: string[] = [];
    for (let page = 1; viaSdk.length < 130; page++) {
      const r = await sdk.DescribeImages!({ RegistryId: TC.instanceId, NamespaceName: 'ns', RepositoryName: 'repo', Limit: 100, Offset: page });
      viaSdk.push(...(r.ImageInfoList as { ImageVersion: string }[]).map((i) => i.ImageVersion));
    }
    expect(seen).toEqual(viaSdk);
  });

  const tc3Table: { name: string; payload: Record<string, unknown>; timestamp: number; action: string }[] = [
    { name: 'empty body', payload: {}, timestamp: 1_700_000_000, action: 'DescribeInstances' },
    { name: 'namespaces page', payload: { RegistryId: 'tcr-1', NamespaceName: 'team-a', Limit: 100, Offset: 3 }, timestamp: 1_735_732_800, action: 'DescribeNamespaces' },
    { name: 'unicode and quotes', payload: { RegistryId: 'tcr-1', Desc: '未命名 "ferry" \\ slash/ & <tag>', TokenType: 'longterm' }, timestamp: 1_600_000_001, action: 'CreateInstanceToken' },
    { name: 'nested arrays and booleans', payload: { RegistryId: 'tcr-1', Filters: [{ Name: 'Tags', Values: ['a:b', 'c'] }], All: true, KmsSignPolicy: false }, timestamp: 1_999_999_999, action: 'DescribeNamespaces' },
    { name: 'day boundary (UTC date in the scope)', payload: { RegistryId: 'tcr-1', NamespaceName: 'x', RepositoryName: 'a/b/c' }, timestamp: 1_704_067_199, action: 'DescribeImages' },
  ];

  it.each(tc3Table)('TC3 signature equals the SDK signer: $name', ({ payload, timestamp, action }) => {
    const expected = TcSign.sign3({
      method: 'POST',
      url: 'https://tcr.tencentcloudapi.com/',
      payload,
      timestamp,
      service: 'tcr',
      secretId: TC.secretId,
      secretKey: TC.secretKey,
      multipart: false,
      headers: { 'Content-Type': 'application/json' },
    });
    const ours = signTc3({ secretId: TC.secretId, secretKey: TC.secretKey, service: 'tcr', host: 'tcr.tencentcloudapi.com', action, version: '2019-09-24', region: TC.region, timestamp, payload: JSON.stringify(payload) });
    expect(ours.headers.Authorization).toBe(expected);
    expect(ours.headers['Content-Type']).toBe('application/json');
  });
});

type SdkList<T> = T[] & { httpStatusCode?: number; 'Content-Range'?: string };

const HW = { ak: 'HWSDKPEERAK000000001', sk: 'hw-sdk-peer-secret-key-0000000000000000', region: 'eu-west-101' };

describe('Huawei SWR: the official Node SDK against the SWR stub', () => {
  let stub: SwrStub;
  afterEach(async () => stub?.close());

  function sdkClient(projectId?: string): InstanceType<typeof huaweiSwr.SwrClient> {
    const credentials = new huaweiCore.BasicCredentials().withAk(HW.ak).withSk(HW.sk).withIamEndpoint(stub.url);
    if (projectId) credentials.withProjectId(projectId);
    return huaweiSwr.SwrClient.newBuilder()
      .withCredential(credentials)
      .withRegion(new huaweiCore.Region(HW.region, [stub.url]))
      .build();
  }

  it("the SDK's own requests (IAM project look-up, X-Project-Id, signed content-type) are accepted, answered in its models", async () => {
    const tags = Array.from({ length: 30 }, (_, i) => ({ tag: `1.${i}`, digest: `sha256:${String(i).padStart(64, 'c')}`, size: 1000 + i, updated: new Date(Date.UTC(2024, 5, 1) + i * 60_000).toISOString() }));
    stub = await startSwrStub({ accessKey: HW.ak, secretKey: HW.sk, region: HW.region, requireProjectId: true, repos: { 'team/app': tags, 'team/web': tags.slice(0, 2) } });
    const sdk = sdkClient();

    const req = new huaweiSwr.ListRepositoryTagsRequest().withNamespace('team').withRepository('app').withLimit('10').withOffset('10').withOrderColumn('updated_at').withOrderType('asc');
    // At run time the core SDK hands back the JSON array itself, with the headers the operation names
    // (Content-Range) and httpStatusCode set on it (DefaultHttpClient._formatHttpResponse).
    const page = (await sdk.listRepositoryTags(req)) as unknown as SdkList<Record<string, unknown>>;
    expect(page.httpStatusCode).toBe(200);
    expect(page['Content-Range']).toBe('10-19/30');
    expect(page).toHaveLength(10);
    expect(page[0]).toMatchObject({ Tag: '1.10', digest: tags[10]!.digest, size: 1010, updated: tags[10]!.updated });

    const repos = (await sdk.listReposDetails(new huaweiSwr.ListReposDetailsRequest().withNamespace('team').withLimit('100').withOffset('0'))) as unknown as SdkList<{ name: string; namespace: string; tags: string[] }>;
    expect(repos['Content-Range']).toBe('0-1/2');
    expect(repos.map((r) => [r.name, r.namespace, r.tags.length])).toEqual([['app', 'team', 30], ['web', 'team', 2]]);

    const created = await sdk.createNamespace(new huaweiSwr.CreateNamespaceRequest().withBody(new huaweiSwr.CreateNamespaceRequestBody('from-sdk')));
    expect(created.httpStatusCode).toBe(201);

    expect(stub.calls('GET /v3/projects')).toHaveLength(1);
    const swrCalls = stub.requests.filter((r) => r.path.startsWith('/v2/'));
    expect(swrCalls.every((r) => r.authorized && r.headers['x-project-id'] === swrStubProjectId(HW.region))).toBe(true);
    for (const r of swrCalls) expect(r.headers.authorization).toMatch(/SignedHeaders=[^,]*content-type[^,]*x-project-id[^,]*x-sdk-date/);
  });

  it('the SDK reads the stub errors in both shapes, with the request id from X-Request-Id', async () => {
    for (const errorFormat of ['flat', 'nested'] as const) {
      stub = await startSwrStub({ accessKey: HW.ak, secretKey: HW.sk, region: HW.region, errorFormat });
      const sdk = sdkClient(swrStubProjectId(HW.region));
      const err = (await sdk.showNamespace(new huaweiSwr.ShowNamespaceRequest().withNamespace('missing')).catch((e: unknown) => e)) as Record<string, unknown>;
      expect(err).toMatchObject({ httpStatusCode: 404, errorCode: 'SVCSTG.SWR.4040017', errorMsg: 'namespace missing not found' });
      expect(String(err.requestId)).toMatch(/^[0-9a-f]{32}$/);
      await stub.close();
    }
  });

  it('refuses requests signed with a wrong SK, as the gateway does', async () => {
    stub = await startSwrStub({ accessKey: HW.ak, secretKey: 'other', region: HW.region });
    await expect(sdkClient(swrStubProjectId(HW.region)).listReposDetails(new huaweiSwr.ListReposDetailsRequest())).rejects.toMatchObject({ httpStatusCode: 401, errorCode: 'APIGW.0301' });
  });

  it('Ferry and the SDK list the same tags', async () => {
    const tags = Array.from({ length: 120 }, (_, i) => ({ tag: `r${i}`, digest: `sha256:${String(i).padStart(64, 'd')}`, updated: new Date(Date.UTC(2024, 0, 1) + i * 1000).toISOString() }));
    stub = await startSwrStub({ accessKey: HW.ak, secretKey: HW.sk, region: HW.region, requireProjectId: true, repos: { 'org/img': tags } });
    const ferry = new SwrApi({ region: HW.region, accessKey: HW.ak, secretKey: HW.sk, apiEndpoint: stub.url, iamEndpoint: stub.url, retries: 0 });
    const ours: string[] = [];
    for await (const t of ferry.listRepositoryTags('org/img')) ours.push(t.Tag!);
    const sdk = sdkClient();
    const theirs: string[] = [];
    for (let offset = 0; theirs.length < 120; offset += 100) {
      const r = (await sdk.listRepositoryTags(new huaweiSwr.ListRepositoryTagsRequest().withNamespace('org').withRepository('img').withLimit('100').withOffset(String(offset)).withOrderColumn('updated_at').withOrderType('asc'))) as unknown as SdkList<{ Tag: string }>;
      theirs.push(...r.map((t) => t.Tag));
    }
    expect(ours).toEqual(theirs);
  });

  const hwTable: { name: string; method: 'GET' | 'POST'; url: string; query?: Record<string, string>; body?: Record<string, unknown> }[] = [
    { name: 'GET without query', method: 'GET', url: 'https://swr-api.eu-west-101.myhuaweicloud.eu/v2/manage/namespaces' },
    { name: 'GET tags with unsorted query', method: 'GET', url: 'https://swr-api.cn-north-4.myhuaweicloud.com/v2/manage/namespaces/team/repos/app/tags', query: { offset: '100', limit: '100', order_type: 'asc', order_column: 'updated_at' } },
    { name: 'special characters in query values', method: 'GET', url: 'https://swr-api.cn-north-4.myhuaweicloud.com/v2/manage/repos', query: { filter: 'namespace::team|name::a b|limit::10', name: '一 (&=?!#%.*)' } },
    { name: 'nested repository written with $', method: 'GET', url: 'https://swr-api.eu-de.otc.t-systems.com/v2/manage/namespaces/org/repos/a$b/tags' },
    { name: 'POST JSON body', method: 'POST', url: 'https://swr-api.eu-de.otc.t-systems.com/v2/manage/namespaces', body: { namespace: 'team-a' } },
    { name: 'host with a port', method: 'POST', url: 'http://127.0.0.1:18443/v2/manage/namespaces', body: { namespace: 'x', note: 'ünïcode "q"' } },
  ];

  it.each(hwTable)('SDK-HMAC-SHA256 signature equals the SDK signer: $name', ({ method, url, query, body }) => {
    const date = '20240102T030405Z';
    const headers = { 'content-type': 'application/json', 'X-Project-Id': 'p0123456789abcdef', 'X-Sdk-Date': date };
    const theirs = AKSKSigner.sign({ endpoint: url, method, headers: { ...headers }, queryParams: query ?? {}, data: body }, { getAk: () => HW.ak, getSk: () => HW.sk });
    const target = new URL(url);
    for (const [k, v] of Object.entries(query ?? {})) target.searchParams.append(k, v);
    const ours = signSdkHmac({
      accessKey: HW.ak,
      secretKey: HW.sk,
      method,
      url: target,
      headers: { ...headers, Host: target.host },
      body: body === undefined ? undefined : JSON.stringify(body),
      signedHeaders: ['content-type', 'host', 'x-project-id', 'x-sdk-date'],
    });
    expect(ours.headers.Authorization).toBe(theirs.Authorization);
  });
});

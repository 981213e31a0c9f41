import { afterEach, describe, expect, it } from 'vitest';
import { CloudApiError } from '../../src/providers/cloud-error.js';
import { contentRangeTotal, HUAWEICLOUD_SWR_ENDPOINTS, parseSwrError, SwrApi, swrApiEndpoint, swrCredentials, SwrDockyard, swrIamEndpoint, type SwrApiOptions } from '../../src/providers/swr-api.js';
import { canonicalQueryString, canonicalUri, sdkDate, signSdkHmac, swrLoginPassword, swrLoginUsername } from '../../src/providers/swr-signer.js';
import { startSwrStub, swrStubProjectId, type SwrStub, type SwrStubOptions } from '../helpers/cloud-stubs.js';

describe('SWR login key', () => {
  it('is hex HMAC-SHA256(key = SK, message = AK) (OTC docs vector)', () => {
    expect(swrLoginPassword('QTWAOYTTINDUT2QVKYUC', 'MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc')).toBe(
      '89aca1198a970e4360203d71cdaa80cfc13ecd55ee84409719e88162d139ef34',
    );
    expect(swrLoginUsername('eu-de', 'QTWAOYTTINDUT2QVKYUC')).toBe('eu-de@QTWAOYTTINDUT2QVKYUC');
  });

  it('swrCredentials prefers explicit username/password, else derives the long-term login', () => {
    const swr = { region: 'eu-de', accessKey: 'QTWAOYTTINDUT2QVKYUC', secretKey: 'MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc', cloud: 'otc' as const, convertToDocker: false };
    expect(swrCredentials({ swr })).toEqual({ username: 'eu-de@QTWAOYTTINDUT2QVKYUC', password: '89aca1198a970e4360203d71cdaa80cfc13ecd55ee84409719e88162d139ef34' });
    expect(swrCredentials({ swr, username: 'u', password: 'p' })).toEqual({ username: 'u', password: 'p' });
    expect(swrCredentials({ swr: { ...swr, accessKey: undefined } })).toBeUndefined();
  });
});

describe('SDK-HMAC-SHA256 (huaweicloud-sdk-go-v3 signer_test.go vectors)', () => {
  it('GET /path?limit=1 with X-Sdk-Date only', () => {
    const s = signSdkHmac({
      accessKey: 'AccessKey',
      secretKey: 'SecretKey',
      method: 'GET',
      url: 'https://example.huaweicloud.com/path?limit=1',
      headers: { 'X-Sdk-Date': '20060102T150405Z' },
    });
    expect(s.canonicalRequest).toBe('GET\n/path/\nlimit=1\nx-sdk-date:20060102T150405Z\n\nx-sdk-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(s.headers.Authorization).toBe(
      'SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=x-sdk-date, Signature=5a2ce64c865e0e6046321c6f3d5a77ba8413eeaf355c3166c03d58d02ac79624',
    );
  });

  it('POST with a JSON body: Content-Type is not signed, the body is hashed as sent', () => {
    // Go's json.Encoder ends the body with "\n"; that newline is part of the signed bytes.
    const s = signSdkHmac({
      accessKey: 'AccessKey',
      secretKey: 'SecretKey',
      method: 'POST',
      url: 'https://example.huaweicloud.com/path?key=value',
      headers: { 'X-Sdk-Date': '20060102T150405Z', 'Content-Type': 'application/json' },
      body: '{"Name":"test","Id":1}\n',
    });
    expect(s.signedHeaders).toEqual(['x-sdk-date']);
    expect(s.signature).toBe('cecc2af119b18ab70b4d094c0750f3b42c02f254903179a0fc2cc72fc9db4f59');
  });

  it('canonical query string and URI follow the SDK encoding', () => {
    expect(
      canonicalQueryString([
        ['limit', '1'],
        ['enable', 'true'],
        ['test', '一 (&=?!#%.*)'],
        ['path', '/tmp/123'],
        ['multi', '3'],
        ['multi', '1'],
        ['multi', '2'],
      ]),
    ).toBe('enable=true&limit=1&multi=1&multi=2&multi=3&path=%2Ftmp%2F123&test=%E4%B8%80%20%28%26%3D%3F%21%23%25.%2A%29');
    expect(canonicalUri('/v2/manage/namespaces')).toBe('/v2/manage/namespaces/');
    expect(canonicalUri('/')).toBe('/');
    expect(canonicalUri('/v2/a%24b/x y')).toBe('/v2/a%24b/x%20y/');
    expect(sdkDate(new Date(Date.UTC(2006, 0, 2, 15, 4, 5, 123)))).toBe('20060102T150405Z');
  });

  it('always signs X-Sdk-Date and adds it when missing', () => {
    const s = signSdkHmac({ accessKey: 'a', secretKey: 'b', method: 'GET', url: 'https://h/x', headers: { Host: 'h' }, date: new Date(0), signedHeaders: ['host'] });
    expect(s.signedHeaders).toEqual(['host', 'x-sdk-date']);
    expect(s.headers['X-Sdk-Date']).toBe('19700101T000000Z');
  });
});

describe('SWR error bodies', () => {
  it('parses SWR arrays and API-gateway objects', () => {
    expect(parseSwrError('[{"errorCode":"SVCSTG.SWR.4000014","errorMessage":"Invalid parameter","detail":""}]')).toEqual({ code: 'SVCSTG.SWR.4000014', message: 'Invalid parameter' });
    expect(parseSwrError('{"error_msg":"Incorrect IAM authentication information: verify aksk signature fail","error_code":"APIGW.0301","request_id":"abc"}')).toEqual({
      code: 'APIGW.0301',
      message: 'Incorrect IAM authentication information: verify aksk signature fail',
      requestId: 'abc',
    });
    expect(parseSwrError('<html>bad gateway</html>')).toEqual({ message: '<html>bad gateway</html>' });
  });

  it('parses both shapes the core SDK reads: {error_code, error_msg} and {error: {code, message}}', () => {
    expect(parseSwrError('{"error_code":"SVCSTG.SWR.4040017","error_msg":"namespace x not found"}')).toEqual({ code: 'SVCSTG.SWR.4040017', message: 'namespace x not found' });
    expect(parseSwrError('{"error":{"code":"IAM.0011","message":"Request parameter error","title":"Bad Request"}}')).toEqual({ code: 'IAM.0011', message: 'Request parameter error' });
  });

  it("Huawei hosts come from the SDK's region table (eu-west-101 lives under .eu); OTC hosts from OTC's naming", () => {
    expect(Object.keys(HUAWEICLOUD_SWR_ENDPOINTS)).toHaveLength(27);
    expect(swrApiEndpoint('eu-west-101')).toBe('https://swr-api.eu-west-101.myhuaweicloud.eu');
    expect(swrApiEndpoint('ap-southeast-3')).toBe('https://swr-api.ap-southeast-3.myhuaweicloud.com');
    expect(swrApiEndpoint('xx-new-1')).toBe('https://swr-api.xx-new-1.myhuaweicloud.com');
    expect(swrApiEndpoint('eu-ch2', 'otc')).toBe('https://swr-api.eu-ch2.sc.otc.t-systems.com');
    expect(swrIamEndpoint('cn-north-4')).toBe('https://iam.myhuaweicloud.com');
    expect(swrIamEndpoint('eu-west-101')).toBe('https://iam.eu-west-101.myhuaweicloud.eu');
    expect(swrIamEndpoint('eu-de', 'otc')).toBe('https://iam.eu-de.otc.t-systems.com');
    expect(swrIamEndpoint('eu-ch2', 'otc')).toBe('https://iam-pub.eu-ch2.sc.otc.t-systems.com');
  });

  it('reads the total of Content-Range', () => {
    expect(contentRangeTotal('0-99/250')).toBe(250);
    expect(contentRangeTotal(['200-249/250'])).toBe(250);
    expect(contentRangeTotal(undefined)).toBeUndefined();
  });

  it('default endpoints; swr.apiEndpoint overrides', () => {
    expect(swrApiEndpoint('cn-north-4')).toBe('https://swr-api.cn-north-4.myhuaweicloud.com');
    expect(swrApiEndpoint('eu-de', 'otc')).toBe('https://swr-api.eu-de.otc.t-systems.com');
    const api = SwrApi.fromConfig({ region: 'eu-nl', accessKey: 'a', secretKey: 'b', cloud: 'otc', convertToDocker: false });
    expect(api.endpoint.href).toBe('https://swr-api.eu-nl.otc.t-systems.com/');
    const custom = SwrApi.fromConfig({ region: 'eu-nl', accessKey: 'a', secretKey: 'b', cloud: 'otc', apiEndpoint: 'https://swr-api.example.test', convertToDocker: false });
    expect(custom.endpoint.host).toBe('swr-api.example.test');
    expect(() => SwrApi.fromConfig({ region: 'eu-de', cloud: 'otc', convertToDocker: false })).toThrow(/accessKey/);
  });
});

const AK = 'HPUAEXAMPLEAK0000001';
const SK = 'sk-example-0123456789abcdefghijklmnopqrstu';

describe('SwrApi against the SWR stub', () => {
  let stub: SwrStub;
  let clock = Date.UTC(2025, 0, 1, 12, 0, 0);
  const now = () => clock;

  async function setup(stubOpts: Partial<SwrStubOptions> = {}, apiOpts: Partial<SwrApiOptions> = {}): Promise<SwrApi> {
    stub = await startSwrStub({ accessKey: AK, secretKey: SK, region: 'eu-de', now, ...stubOpts });
    return new SwrApi({ region: 'eu-de', accessKey: AK, secretKey: SK, cloud: 'otc', apiEndpoint: stub.url, iamEndpoint: stub.url, now, retries: 0, retryDelayMs: 1, ...apiOpts });
  }

  afterEach(async () => {
    clock = Date.UTC(2025, 0, 1, 12, 0, 0);
    await stub?.close();
  });

  it('creates a missing organization once, even for concurrent callers', async () => {
    const api = await setup();
    await Promise.all(Array.from({ length: 6 }, () => api.ensureNamespace('team-a')));
    await api.ensureNamespace('team-a');
    expect(stub.calls('POST /v2/manage/namespaces')).toHaveLength(1);
    expect(stub.calls('GET /v2/manage/namespaces/{namespace}')).toHaveLength(1);
    expect(stub.calls('POST /v2/manage/namespaces')[0]!.params).toEqual({ namespace: 'team-a' });
    expect(stub.namespaces.has('team-a')).toBe(true);
    expect(stub.requests.every((r) => r.authorized)).toBe(true);
  });

  it('createNamespace: 201 → created, 409 → exists; existing organizations are not re-created', async () => {
    const api = await setup({ namespaces: ['mine'] });
    expect(await api.createNamespace('mine')).toBe('exists');
    expect(await api.createNamespace('new.org')).toBe('created');
    await api.ensureNamespace('mine');
    expect(stub.calls('POST /v2/manage/namespaces')).toHaveLength(2);
    expect(await api.describeNamespace('mine')).toBe(true);
    expect(await api.describeNamespace('nope')).toBe(false);
  });

  it("refuses an organization that exists but belongs to another tenant", async () => {
    const api = await setup({ foreignNamespaces: ['taken'] });
    expect(await api.createNamespace('taken')).toBe('exists');
    const err = (await api.ensureNamespace('taken').catch((e: unknown) => e)) as CloudApiError;
    expect(err).toBeInstanceOf(CloudApiError);
    expect(err.code).toBe('NamespaceOwnedElsewhere');
    expect(err.message).toMatch(/not visible to these credentials/);
  });

  it("passes SWR's 400 message through (invalid name, quota)", async () => {
    const api = await setup({ namespaces: ['a1', 'a2'], namespaceQuota: 2 });
    const invalid = (await api.createNamespace('Bad_Name').catch((e: unknown) => e)) as CloudApiError;
    expect(invalid.status).toBe(400);
    expect(invalid.code).toBe('SVCSTG.SWR.4000014');
    expect(invalid.message).toContain('Invalid parameter: namespace Bad_Name is invalid');
    const quota = (await api.ensureNamespace('a3').catch((e: unknown) => e)) as CloudApiError;
    expect(quota.status).toBe(400);
    expect(quota.message).toContain('exceeds the upper limit');
    expect(quota.requestId).toBeTruthy();
  });

  it('fails with APIGW.0301 for a wrong SK, without leaking secrets', async () => {
    const api = await setup({}, { secretKey: 'definitely-not-the-sk' });
    const err = (await api.ensureNamespace('team-a').catch((e: unknown) => e)) as CloudApiError;
    expect(err).toBeInstanceOf(CloudApiError);
    expect(err.status).toBe(401);
    expect(err.code).toBe('APIGW.0301');
    expect(err.isAuthFailure).toBe(true);
    expect(err.message).toContain('verify aksk signature fail');
    expect(err.message).not.toContain('definitely-not-the-sk');
    expect(err.message).not.toContain(SK);
    expect(stub.namespaces.size).toBe(0);
  });

  it('fails for an unknown AK and for X-Sdk-Date skewed by more than 15 minutes', async () => {
    const api = await setup({}, { accessKey: 'UNKNOWNAK' });
    await expect(api.describeNamespace('a')).rejects.toMatchObject({ status: 401, code: 'APIGW.0301' });
    const skewed = new SwrApi({ region: 'eu-de', accessKey: AK, secretKey: SK, apiEndpoint: stub.url, projectId: swrStubProjectId('eu-de'), retries: 0, now: () => clock - 16 * 60_000 });
    await expect(skewed.describeNamespace('a')).rejects.toMatchObject({ status: 401 });
    const fine = new SwrApi({ region: 'eu-de', accessKey: AK, secretKey: SK, apiEndpoint: stub.url, projectId: swrStubProjectId('eu-de'), retries: 0, now: () => clock - 14 * 60_000 });
    expect(await fine.describeNamespace('a')).toBe(false);
  });

  it('signs and sends Content-Type application/json and X-Project-Id looked up once from IAM, as the SDK does', async () => {
    const api = await setup({ requireProjectId: true });
    await api.ensureNamespace('team-a');
    await api.describeNamespace('team-a');
    const iam = stub.calls('GET /v3/projects');
    expect(iam).toHaveLength(1);
    expect(iam[0]!.path).toBe('/v3/projects?name=eu-de');
    const swrCalls = stub.requests.filter((r) => r.path.startsWith('/v2/'));
    expect(swrCalls.length).toBeGreaterThan(1);
    for (const r of swrCalls) {
      expect(r.authorized).toBe(true);
      expect(r.headers['x-project-id']).toBe(swrStubProjectId('eu-de'));
      expect(r.headers['content-type']).toBe('application/json');
      expect(r.headers.authorization).toMatch(/SignedHeaders=content-type;host;x-project-id;x-sdk-date,/);
    }
  });

  it('uses a configured project id without asking IAM; a wrong one is refused', async () => {
    const api = await setup({}, { projectId: swrStubProjectId('eu-de') });
    expect(await api.describeNamespace('x')).toBe(false);
    expect(stub.calls('GET /v3/projects')).toHaveLength(0);
    const wrong = new SwrApi({ region: 'eu-de', accessKey: AK, secretKey: SK, apiEndpoint: stub.url, projectId: 'not-mine', retries: 0, now });
    await expect(wrong.describeNamespace('x')).rejects.toMatchObject({ status: 403, code: 'APIGW.0302' });
  });

  it('says to set swr.projectId when IAM has no project for the region', async () => {
    const api = await setup({ projects: { 'eu-nl': 'p-nl' } });
    const err = (await api.describeNamespace('x').catch((e: unknown) => e)) as CloudApiError;
    expect(err.code).toBe('ProjectNotFound');
    expect(err.message).toMatch(/no IAM project named "eu-de".*swr\.projectId/);
  });

  it('lists tags with digests (limit + offset, Content-Range) and repositories', async () => {
    const tags = Array.from({ length: 230 }, (_, i) => ({ tag: `v${i}`, digest: `sha256:${String(i).padStart(64, '0')}`, updated: new Date(Date.UTC(2024, 0, 1) + i * 1000).toISOString() }));
    const api = await setup({ repos: { 'team/app': tags, 'team/lib': tags.slice(0, 3), 'other/x': [] } });
    const listed = [];
    for await (const t of api.listRepositoryTags('team/app')) listed.push(t);
    expect(listed.map((t) => t.Tag)).toEqual(tags.map((t) => t.tag)); // oldest first
    expect(listed[5]).toMatchObject({ digest: tags[5]!.digest, updated: tags[5]!.updated });
    const calls = stub.calls('GET /v2/manage/namespaces/{namespace}/repos/{repository}/tags');
    expect(calls.map((c) => new URL(c.path, 'http://x').searchParams.get('offset'))).toEqual(['0', '100', '200']);
    expect(new URL(calls[0]!.path, 'http://x').searchParams.get('limit')).toBe('100');
    const repos = [];
    for await (const r of api.listRepositories('team')) repos.push(r);
    expect(repos).toEqual(['team/app', 'team/lib']);
    const none = [];
    for await (const t of api.listRepositoryTags('team/missing')) none.push(t);
    for await (const t of api.listRepositoryTags('nope/missing')) none.push(t);
    expect(none).toEqual([]);
  });

  it('reads errors in either shape, with the request id from X-Request-Id', async () => {
    for (const errorFormat of ['flat', 'nested', 'array'] as const) {
      const api = await setup({ errorFormat, namespaces: ['a1'], namespaceQuota: 1 });
      const err = (await api.createNamespace('a2').catch((e: unknown) => e)) as CloudApiError;
      expect(err.code).toBe('SVCSTG.SWR.4000077');
      expect(err.message).toContain('exceeds the upper limit');
      expect(err.requestId).toMatch(/^[0-9a-f]{32}$/);
      await stub.close();
    }
  });

  it('retries 5xx answers', async () => {
    const api = await setup({}, { retries: 1 });
    stub.injectError(503, 'SVCSTG.SWR.5030000', 'busy', { action: 'POST /v2/manage/namespaces' });
    expect(await api.createNamespace('again')).toBe('created');
    expect(stub.calls('POST /v2/manage/namespaces')).toHaveLength(2);
  });
});

describe('SwrDockyard (registry host, Basic auth)', () => {
  let stub: SwrStub;
  afterEach(async () => {
    await stub?.close();
  });

  const login = { username: swrLoginUsername('eu-de', AK), password: swrLoginPassword(AK, SK) };

  it('GET then POST like Harbor, once per namespace; `{}` means missing', async () => {
    stub = await startSwrStub({ accessKey: AK, secretKey: SK, region: 'eu-de', namespaces: ['have'] });
    const d = new SwrDockyard({ registryUrl: stub.url, ...login, retries: 0 });
    await Promise.all([d.ensureNamespace('new-org'), d.ensureNamespace('new-org'), d.ensureNamespace('have')]);
    expect(stub.calls('GET /dockyard/v2/namespaces/{namespace}')).toHaveLength(2);
    expect(stub.calls('POST /dockyard/v2/namespaces')).toHaveLength(1);
    expect(stub.calls('POST /dockyard/v2/namespaces')[0]!.params).toEqual({ namespace: 'new-org' });
    expect(stub.namespaces.has('new-org')).toBe(true);
  });

  it('treats 404 as missing and 409 as exists', async () => {
    stub = await startSwrStub({ accessKey: AK, secretKey: SK, region: 'eu-de', dockyardMissingStatus: 404, foreignNamespaces: ['theirs'] });
    const d = new SwrDockyard({ registryUrl: stub.url, ...login, retries: 0 });
    expect(await d.describeNamespace('x')).toBe(false);
    expect(await d.createNamespace('theirs')).toBe('exists');
  });

  it('rejects wrong credentials', async () => {
    stub = await startSwrStub({ accessKey: AK, secretKey: SK, region: 'eu-de' });
    const d = new SwrDockyard({ registryUrl: stub.url, username: login.username, password: 'wrong-password', retries: 0 });
    const err = (await d.ensureNamespace('x').catch((e: unknown) => e)) as CloudApiError;
    expect(err).toBeInstanceOf(CloudApiError);
    expect(err.status).toBe(401);
    expect(err.isAuthFailure).toBe(true);
    expect(err.message).not.toContain('wrong-password');
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import { CloudApiError } from '../../src/providers/cloud-error.js';
import { signTc3 } from '../../src/providers/tc3-signer.js';
import { TcrApi, TcrCredentialSource, expTimeToDate, tcrTime, type TcrApiOptions } from '../../src/providers/tcr-api.js';
import { startTcrStub, type TcrStub, type TcrStubOptions } from '../helpers/cloud-stubs.js';

const SECRET_ID = 'AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE';
const SECRET_KEY = 'Gu5t9xGARNpq86cd98joQYCN3EXAMPLE';

describe('TC3-HMAC-SHA256 (Tencent "signature v3" published example)', () => {
  // The payload is hashed as sent: with the literal text \u672a\u547d\u540d (JSON escapes).
  const input = {
    secretId: SECRET_ID,
    secretKey: SECRET_KEY,
    service: 'cvm',
    host: 'cvm.tencentcloudapi.com',
    action: 'DescribeInstances',
    version: '2017-03-12',
    region: 'ap-guangzhou',
    timestamp: 1551113065,
    // The published example signs this content type; Ferry's default is the SDK's application/json.
    contentType: 'application/json; charset=utf-8',
    payload: '{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}',
  };

  it('reproduces the payload hash, canonical request hash and signature', () => {
    const s = signTc3(input);
    expect(s.payloadHash).toBe('35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064');
    expect(s.canonicalRequest).toBe(
      'POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n\ncontent-type;host\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064',
    );
    expect(s.canonicalRequestHash).toBe('5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031');
    expect(s.stringToSign).toBe('TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031');
    expect(s.signature).toBe('72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168');
    expect(s.headers).toMatchObject({
      Authorization: `TC3-HMAC-SHA256 Credential=${SECRET_ID}/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host, Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168`,
      'X-TC-Action': 'DescribeInstances',
      'X-TC-Timestamp': '1551113065',
      'X-TC-Version': '2017-03-12',
      'X-TC-Region': 'ap-guangzhou',
    });
    expect(s.headers['X-TC-Token']).toBeUndefined();
  });

  it('does not reproduce it with the decoded characters (the bytes differ)', () => {
    const s = signTc3({ ...input, payload: JSON.stringify(JSON.parse(input.payload)) });
    expect(s.payloadHash).not.toBe('35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064');
  });

  it("defaults to the SDK's content type, application/json, signed and sent", () => {
    const { contentType: _ct, ...rest } = input;
    const s = signTc3(rest);
    expect(s.headers['Content-Type']).toBe('application/json');
    expect(s.canonicalRequest).toContain('\ncontent-type:application/json\nhost:');
  });

  it('adds X-TC-Token for temporary credentials', () => {
    expect(signTc3({ ...input, token: 'session' }).headers['X-TC-Token']).toBe('session');
  });
});

describe('TcrApi against the TCR stub', () => {
  let stub: TcrStub;
  let clock = Date.UTC(2025, 0, 1, 12, 0, 0);
  const now = () => clock;

  async function setup(stubOpts: Partial<TcrStubOptions> = {}, apiOpts: Partial<TcrApiOptions> = {}): Promise<TcrApi> {
    stub = await startTcrStub({ secretId: SECRET_ID, secretKey: SECRET_KEY, instanceId: 'tcr-test1234', region: 'ap-guangzhou', now, ...stubOpts });
    return new TcrApi({
      secretId: SECRET_ID,
      secretKey: SECRET_KEY,
      region: 'ap-guangzhou',
      instanceId: 'tcr-test1234',
      apiEndpoint: stub.url,
      now,
      retries: 0,
      retryDelayMs: 1,
      ...apiOpts,
    });
  }

  afterEach(async () => {
    clock = Date.UTC(2025, 0, 1, 12, 0, 0);
    await stub?.close();
  });

  it('creates a missing namespace private, once, even for concurrent callers', async () => {
    const api = await setup({ namespaces: ['other', 'team-a-old'] });
    await Promise.all(Array.from({ length: 8 }, () => api.ensureNamespace('team-a')));
    await api.ensureNamespace('team-a');
    expect(stub.calls('DescribeNamespaces')).toHaveLength(1);
    expect(stub.calls('CreateNamespace')).toHaveLength(1);
    expect(stub.calls('CreateNamespace')[0]!.params).toEqual({ RegistryId: 'tcr-test1234', NamespaceName: 'team-a', IsPublic: false });
    expect(stub.namespaces.get('team-a')).toBe(false);
    expect(stub.requests.every((r) => r.authorized)).toBe(true);
  });

  it('does not create a namespace that exists (exact name, not the fuzzy filter)', async () => {
    const api = await setup({ namespaces: ['team-a'] });
    expect(await api.describeNamespace('team-a')).toBe(true);
    expect(await api.describeNamespace('team')).toBe(false); // "team-a" matches the filter, not the name
    await api.ensureNamespace('team-a');
    expect(stub.calls('CreateNamespace')).toHaveLength(0);
  });

  it('treats ErrNoNamespace (empty instance) as missing', async () => {
    const api = await setup({ namespaces: [] });
    expect(await api.describeNamespace('first')).toBe(false);
    await api.ensureNamespace('first');
    expect(stub.namespaces.has('first')).toBe(true);
  });

  it('treats ErrNamespaceExist as success', async () => {
    const api = await setup({ namespaces: ['dup'] });
    expect(await api.createNamespace('dup')).toBe('exists');
    expect(await api.createNamespace('fresh', true)).toBe('created');
    expect(stub.namespaces.get('fresh')).toBe(true);
  });

  it('reports reserved names and the namespace quota with code, message and RequestId', async () => {
    const api = await setup({ namespaces: ['a1'], reservedNamespaces: ['library'], namespaceQuota: 1 });
    const reserved = await api.ensureNamespace('library').catch((e: unknown) => e);
    expect(reserved).toBeInstanceOf(CloudApiError);
    const r = reserved as CloudApiError;
    expect(r.provider).toBe('tcr');
    expect(r.action).toBe('CreateNamespace');
    expect(r.code).toBe('InvalidParameter.ErrNamespaceReserved');
    expect(r.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.message).toContain('InvalidParameter.ErrNamespaceReserved: namespace library is reserved');
    expect(r.message).toContain(r.requestId!);
    expect(r.isAuthFailure).toBe(false);

    const quota = (await api.ensureNamespace('b2').catch((e: unknown) => e)) as CloudApiError;
    expect(quota.code).toBe('LimitExceeded.ErrNamespaceMaxLimit');
  });

  it('forgets a failed ensureNamespace so a later call retries', async () => {
    const api = await setup({ namespaces: ['x1'] });
    stub.injectError('InternalError.DbError', 'database unavailable', { action: 'CreateNamespace' });
    await expect(api.ensureNamespace('later')).rejects.toThrow(/InternalError.DbError/);
    await api.ensureNamespace('later');
    expect(stub.namespaces.has('later')).toBe(true);
  });

  it('retries throttling (RequestLimitExceeded), re-signing each attempt', async () => {
    const api = await setup({ namespaces: ['x1'] }, { retries: 2 });
    stub.injectError('RequestLimitExceeded', 'too many requests', { times: 2 });
    expect(await api.describeNamespace('x1')).toBe(true);
    expect(stub.calls('DescribeNamespaces')).toHaveLength(3);
  });

  it('fails with AuthFailure.SignatureFailure for a wrong SecretKey, without leaking secrets', async () => {
    const api = await setup({}, { secretKey: 'wrong-secret-key-value' });
    const err = (await api.ensureNamespace('team-a').catch((e: unknown) => e)) as CloudApiError;
    expect(err).toBeInstanceOf(CloudApiError);
    expect(err.code).toBe('AuthFailure.SignatureFailure');
    expect(err.isAuthFailure).toBe(true);
    expect(err.message).not.toContain('wrong-secret-key-value');
    expect(err.message).not.toContain(SECRET_KEY);
    expect(JSON.stringify(err)).not.toContain('wrong-secret-key-value');
    expect(stub.requests.every((r) => !r.authorized)).toBe(true);
    expect(stub.namespaces.size).toBe(0);
  });

  it('fails for an unknown SecretId and for a clock skewed by more than 5 minutes', async () => {
    const api = await setup({}, { secretId: 'AKIDunknown' });
    await expect(api.describeNamespace('a')).rejects.toMatchObject({ code: 'AuthFailure.SecretIdNotFound' });

    const skewed = new TcrApi({ secretId: SECRET_ID, secretKey: SECRET_KEY, region: 'ap-guangzhou', instanceId: 'tcr-test1234', apiEndpoint: stub.url, retries: 0, now: () => clock + 6 * 60_000 });
    await expect(skewed.describeNamespace('a')).rejects.toMatchObject({ code: 'AuthFailure.SignatureExpire' });
    const fine = new TcrApi({ secretId: SECRET_ID, secretKey: SECRET_KEY, region: 'ap-guangzhou', instanceId: 'tcr-test1234', apiEndpoint: stub.url, retries: 0, now: () => clock + 4 * 60_000 });
    expect(await fine.describeNamespace('a')).toBe(false);
  });

  it('sends X-TC-Token when configured, and the stub checks it', async () => {
    const api = await setup({ sessionToken: 'sts-token', namespaces: ['x1'] }, { token: 'sts-token' });
    expect(await api.describeNamespace('x1')).toBe(true);
    const without = new TcrApi({ secretId: SECRET_ID, secretKey: SECRET_KEY, region: 'ap-guangzhou', instanceId: 'tcr-test1234', apiEndpoint: stub.url, now, retries: 0 });
    await expect(without.describeNamespace('x1')).rejects.toMatchObject({ code: 'AuthFailure.TokenFailure' });
  });

  it('reports an unreachable endpoint as NetworkError', async () => {
    const api = await setup();
    await stub.close();
    const err = (await api.describeNamespace('a').catch((e: unknown) => e)) as CloudApiError;
    expect(err.isUnreachable).toBe(true);
  });

  it('sends exactly content-type: application/json, as the SDK does', async () => {
    const api = await setup({ namespaces: ['x1'] });
    await api.describeNamespace('x1');
    expect(stub.requests[0]!.headers['content-type']).toBe('application/json');
    expect(stub.requests[0]!.authorized).toBe(true);
  });

  it('pages DescribeNamespaces with Offset as a page number from 1 (more than 100 matches)', async () => {
    const many = Array.from({ length: 230 }, (_, i) => `team-${String(i).padStart(3, '0')}`);
    const api = await setup({ namespaces: many });
    expect(await api.describeNamespace('team-')).toBe(false); // 230 fuzzy matches, none exact: read to the end
    const offsets = stub.calls('DescribeNamespaces').map((c) => [c.params!.Offset, c.params!.Limit]);
    expect(offsets).toEqual([[1, 100], [2, 100], [3, 100]]);
    expect(await api.describeNamespace('team-229')).toBe(true);
    expect(await api.describeNamespace('team')).toBe(false);
  });

  it('lists repositories (DescribeRepositories) and tags with digests (DescribeImages), 100 a page', async () => {
    const tags = Array.from({ length: 250 }, (_, i) => ({ tag: `v${i}`, digest: `sha256:${String(i).padStart(64, '0')}`, size: 100 + i, updateTime: new Date(Date.UTC(2024, 0, 1) + i * 60_000).toISOString() }));
    const api = await setup({ images: { 'team/app': tags, 'team/sub/tool': [tags[0]!], 'other/x': [tags[1]!] } });
    const repos: string[] = [];
    for await (const r of api.listRepositories()) repos.push(r);
    expect(repos.sort()).toEqual(['other/x', 'team/app', 'team/sub/tool']);
    const inTeam: string[] = [];
    for await (const r of api.listRepositories('team')) inTeam.push(r);
    expect(inTeam.sort()).toEqual(['team/app', 'team/sub/tool']);

    const images = [];
    for await (const i of api.describeImages('team/app')) images.push(i);
    expect(images).toHaveLength(250);
    expect(new Set(images.map((i) => i.ImageVersion)).size).toBe(250);
    const calls = stub.calls('DescribeImages');
    expect(calls.map((c) => c.params)).toEqual([1, 2, 3].map((Offset) => ({ RegistryId: 'tcr-test1234', NamespaceName: 'team', RepositoryName: 'app', Limit: 100, Offset })));
    const nested = [];
    for await (const i of api.describeImages('team/sub/tool')) nested.push(i);
    expect(nested.map((i) => i.ImageVersion)).toEqual(['v0']);
    expect(stub.calls('DescribeImages').at(-1)!.params).toMatchObject({ NamespaceName: 'team', RepositoryName: 'sub/tool' });
  });

  it('a missing namespace or repository lists nothing', async () => {
    const api = await setup({ images: { 'team/app': [] } });
    const none = [];
    for await (const i of api.describeImages('team/missing')) none.push(i);
    for await (const i of api.describeImages('nope/missing')) none.push(i);
    for await (const i of api.listRepositories('nope')) none.push(i);
    expect(none).toEqual([]);
  });

  it('reads TCR times (Go time format or ISO) and ExpTime in seconds or milliseconds', () => {
    expect(tcrTime('2024-03-05 10:11:12.123456789 +0000 UTC')).toBe('2024-03-05T10:11:12.123Z');
    expect(tcrTime('2024-03-05 18:11:12 +0800 CST')).toBe('2024-03-05T10:11:12.000Z');
    expect(tcrTime('2024-03-05T10:11:12Z')).toBe('2024-03-05T10:11:12.000Z');
    expect(tcrTime('garbage')).toBeUndefined();
    expect(expTimeToDate(1735732800).toISOString()).toBe('2025-01-01T12:00:00.000Z');
    expect(expTimeToDate(1735732800000).toISOString()).toBe('2025-01-01T12:00:00.000Z');
  });

  it('creates instance tokens whose ExpTime comes in seconds', async () => {
    const api = await setup({ expTimeUnit: 's' });
    const t = await api.createInstanceToken();
    expect(t.expiresAt.getTime()).toBe(clock + 3_600_000);
    const creds = new TcrCredentialSource(api);
    await creds.get();
    clock += 30 * 60_000;
    await creds.get(); // cached: half an hour left
    expect(stub.calls('CreateInstanceToken')).toHaveLength(2);
  });

  it('creates instance tokens; ExpTime is in milliseconds', async () => {
    const seen: string[] = [];
    const api = await setup({ onToken: (u) => void seen.push(u) });
    const t = await api.createInstanceToken();
    expect(t.expiresAt.getTime()).toBe(clock + 3_600_000);
    expect(t.username).toBe(seen[0]);
    expect(t.password).toBe(stub.tokens[0]!.password);
    expect(stub.calls('CreateInstanceToken')[0]!.params).toEqual({ RegistryId: 'tcr-test1234', TokenType: 'temp' });
    const long = await api.createInstanceToken({ type: 'longterm', desc: 'ferry' });
    expect(long.tokenId).toBeTruthy();
  });
});

describe('TcrCredentialSource', () => {
  let stub: TcrStub;
  let clock = Date.UTC(2025, 0, 1, 12, 0, 0);
  afterEach(async () => {
    await stub?.close();
  });

  it('caches the temporary token and refreshes it 5 minutes before expiry; concurrent callers share one refresh', async () => {
    stub = await startTcrStub({ secretId: SECRET_ID, secretKey: SECRET_KEY, instanceId: 'tcr-1', now: () => clock });
    const api = new TcrApi({ secretId: SECRET_ID, secretKey: SECRET_KEY, region: 'ap-guangzhou', instanceId: 'tcr-1', apiEndpoint: stub.url, now: () => clock, retries: 0 });
    const creds = new TcrCredentialSource(api);

    const first = await Promise.all([creds.get(), creds.get(), creds.source()]);
    expect(stub.calls('CreateInstanceToken')).toHaveLength(1);
    expect(first[1]).toEqual(first[0]);
    expect(first[2]).toEqual(first[0]);

    clock += 50 * 60_000; // 50 min: still 10 min left
    expect(await creds.get()).toEqual(first[0]);
    expect(stub.calls('CreateInstanceToken')).toHaveLength(1);

    clock += 6 * 60_000; // 56 min: inside the 5-minute window
    const refreshed = await Promise.all([creds.get(), creds.get(), creds.get()]);
    expect(stub.calls('CreateInstanceToken')).toHaveLength(2);
    expect(refreshed[0]).not.toEqual(first[0]);
    expect(refreshed[0]).toEqual({ username: stub.tokens[1]!.username, password: stub.tokens[1]!.password });

    creds.invalidate();
    await creds.get();
    expect(stub.calls('CreateInstanceToken')).toHaveLength(3);
  });

  it('hands out fixed credentials when the stub is configured with them (for real-registry tests)', async () => {
    stub = await startTcrStub({ secretId: SECRET_ID, secretKey: SECRET_KEY, instanceId: 'tcr-1', fixedCredentials: { username: '100012345678', password: 'registry-pass' } });
    const api = new TcrApi({ secretId: SECRET_ID, secretKey: SECRET_KEY, region: 'ap-guangzhou', instanceId: 'tcr-1', apiEndpoint: stub.url, retries: 0 });
    expect(await new TcrCredentialSource(api).get()).toEqual({ username: '100012345678', password: 'registry-pass' });
  });

  it('uses a short-lived token for half its life instead of refetching on every call', async () => {
    let calls = 0;
    const fake = {
      now: () => clock,
      createInstanceToken: async () => ({ username: 'u', password: `p${++calls}`, expiresAt: new Date(clock + 2 * 60_000) }),
    };
    const creds = new TcrCredentialSource(fake);
    await creds.get();
    clock += 30_000;
    await creds.get();
    expect(calls).toBe(1);
    clock += 61_000;
    await creds.get();
    expect(calls).toBe(2);
  });

  it('does not cache a failed refresh', async () => {
    let calls = 0;
    const fake = {
      now: () => clock,
      createInstanceToken: async () => {
        calls++;
        if (calls === 1) throw new Error('boom');
        return { username: 'u', password: 'p', expiresAt: new Date(clock + 3_600_000) };
      },
    };
    const creds = new TcrCredentialSource(fake);
    await expect(creds.get()).rejects.toThrow('boom');
    expect(await creds.get()).toEqual({ username: 'u', password: 'p' });
  });
});

// The request layer (src/http/) and the registry client on it, against undici's MockAgent: retries,
// Retry-After and the shared back-off, 401 flows with replayable bodies, redirects with and without
// credentials, cross-origin Link and Location, token realm rules, pagination caps, bounded bodies,
// request counts and the observer.
import { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { MockAgent } from 'undici';
import { ByteBudget, RequestCounter, type RequestEvent, Transport, readBody } from '../../src/http/index.js';
import { isLinkLocalOrMetadata } from '../../src/registry/auth.js';
import { RegistryClient, StaleCredentialsError } from '../../src/registry/client.js';
import {
  BodyTooLargeError,
  DigestMismatchError,
  RegistryError,
  TokenRefusedError,
  UnsupportedDigestError,
  UntrustedUrlError,
  parseErrorBody,
  remoteText,
} from '../../src/registry/errors.js';
import { putMonolithic, startUpload } from '../../src/registry/upload.js';
import { HarborApi } from '../../src/providers/harbor-api.js';
import { TcrCredentialSource } from '../../src/providers/tcr-api.js';
import type { ArtifactContext } from '../../src/transfer/artifact-copier.js';
import type { BlobCopier } from '../../src/transfer/blob-copier.js';
import { ChartMuseumCopier } from '../../src/transfer/charts.js';
import { type MockAnswer, type SeenRequest, mockAgent, mockOrigin } from './mock-origin.js';

const REG = 'https://registry.example';
const OTHER = 'https://elsewhere.example';
const AUTH = 'https://auth.example';
const BASIC = `Basic ${Buffer.from('ferry:s3cret').toString('base64')}`;
const creds = async () => ({ username: 'ferry', password: 's3cret' });

let agent: MockAgent;
beforeEach(() => {
  agent = mockAgent();
});
afterEach(async () => {
  await agent.close();
});

function client(extra: Partial<ConstructorParameters<typeof RegistryClient>[0]> = {}): RegistryClient {
  return new RegistryClient({ name: 'reg', url: REG, dispatcher: agent, credentials: creds, retries: 3, retryDelayMs: 1, ...extra });
}

/** A registry that wants Basic credentials on every request; `route` answers authenticated ones. */
function basicRegistry(route: (req: SeenRequest) => { status: number; headers?: Record<string, string>; body?: string | object }) {
  return mockOrigin(agent, REG, (req) => {
    if (req.headers.authorization !== BASIC) return { status: 401, headers: { 'www-authenticate': 'Basic realm="r"' }, body: { errors: [{ code: 'UNAUTHORIZED' }] } };
    return route(req);
  });
}

const noAuth = (seen: SeenRequest[]) => seen.filter((r) => r.headers.authorization !== undefined);

describe('retries', () => {
  it('retries 503 with Retry-After, pausing the whole registry, then succeeds', async () => {
    let calls = 0;
    mockOrigin(agent, REG, () => (++calls === 1 ? { status: 503, headers: { 'retry-after': '1' } } : { status: 200, body: {} }));
    const t = new Transport({ name: 'reg', dispatcher: agent, retryDelayMs: 1 });
    const before = Date.now();
    const pending = t.send({ method: 'GET', url: new URL(`${REG}/v2/`) });
    await new Promise((r) => setTimeout(r, 50));
    // The shared back-off holds every request to this registry for the Retry-After.
    expect(t.backoff.until - before).toBeGreaterThanOrEqual(1000);
    const res = await pending;
    await res.body.dump();
    expect(res.statusCode).toBe(200);
    expect(calls).toBe(2);
  });

  it('retries network errors and gives up after the configured retries with UnreachableError', async () => {
    const pool = agent.get(REG);
    pool.intercept({ path: '/v2/', method: 'GET' }).replyWithError(Object.assign(new Error('reset'), { code: 'ECONNRESET' })).times(2);
    pool.intercept({ path: '/v2/', method: 'GET' }).reply(200, '{}');
    const t = new Transport({ name: 'reg', dispatcher: agent, retries: 2, retryDelayMs: 1 });
    const res = await t.send({ method: 'GET', url: new URL(`${REG}/v2/`) });
    await res.body.dump();
    expect(res.statusCode).toBe(200);

    pool.intercept({ path: '/v2/x', method: 'GET' }).replyWithError(Object.assign(new Error('reset'), { code: 'ECONNRESET' })).times(3);
    await expect(t.send({ method: 'GET', url: new URL(`${REG}/v2/x`) })).rejects.toMatchObject({ name: 'UnreachableError', registry: 'reg' });
  });

  it('sends a one-shot stream once, but replays a body factory', async () => {
    let puts = 0;
    mockOrigin(agent, REG, () => (++puts === 1 ? { status: 502 } : { status: 201 }));
    const t = new Transport({ name: 'reg', dispatcher: agent, retryDelayMs: 1 });
    const once = await t.send({ method: 'PUT', url: new URL(`${REG}/up`), body: Readable.from([Buffer.from('x')]) });
    await once.body.dump();
    expect(once.statusCode).toBe(502);
    puts = 0;
    let opened = 0;
    const res = await t.send({ method: 'PUT', url: new URL(`${REG}/up`), body: () => (opened++, Readable.from([Buffer.from('x')])) });
    await res.body.dump();
    expect([res.statusCode, opened]).toEqual([201, 2]);
  });

  it('retries what the vendor marks as throttling in a 200 body (retryIf)', async () => {
    let n = 0;
    mockOrigin(agent, REG, () => ({ status: 200, body: ++n === 1 ? { Response: { Error: { Code: 'RequestLimitExceeded' } } } : { Response: {} } }));
    const t = new Transport({ name: 'api', dispatcher: agent, retryDelayMs: 1 });
    const res = await t.send({ method: 'POST', url: new URL(`${REG}/`), body: '{}', retryIf: (r) => r.text.includes('RequestLimitExceeded') });
    expect(await res.body.text()).toBe('{"Response":{}}');
    expect(n).toBe(2);
  });
});

describe('authentication', () => {
  it('answers a Basic challenge once and then sends Basic on every request, to the registry only', async () => {
    const seen = basicRegistry(() => ({ status: 200, body: {} }));
    const c = client();
    await c.ping();
    await c.ping();
    expect(seen.map((r) => r.headers.authorization ?? '-')).toEqual(['-', BASIC, BASIC]);
  });

  it('fetches a Bearer token from the realm with Basic, and sends the token (never the password) to the registry', async () => {
    const realm = mockOrigin(agent, AUTH, (req) =>
      req.headers.authorization === BASIC ? { status: 200, body: { token: 'tok', expires_in: 300 } } : { status: 401, body: { errors: [{ code: 'DENIED' }] } },
    );
    const reg = mockOrigin(agent, REG, (req) =>
      req.headers.authorization === 'Bearer tok'
        ? { status: 200, body: { tags: ['a'] } }
        : { status: 401, headers: { 'www-authenticate': `Bearer realm="${AUTH}/token",service="reg",scope="repository:x:pull"` } },
    );
    const c = client();
    expect(await c.listTags('x')).toEqual(['a']);
    expect(realm).toHaveLength(1);
    expect(realm[0]!.path).toContain('scope=repository%3Ax%3Apull');
    expect(reg.map((r) => r.headers.authorization ?? '-')).toEqual(['-', 'Bearer tok']);
    expect(reg.some((r) => r.headers.authorization === BASIC)).toBe(false);
  });

  it('re-authenticates a 401 on an upload inside the client by replaying the body factory', async () => {
    let tokens = 0;
    mockOrigin(agent, AUTH, () => ({ status: 200, body: { token: `t${++tokens}` } }));
    let refused = false;
    mockOrigin(agent, REG, (req): MockAnswer => {
      if (!req.headers.authorization) return { status: 401, headers: { 'www-authenticate': `Bearer realm="${AUTH}/token",service="reg"` } };
      if (req.method === 'POST') return { status: 202, headers: { location: '/v2/x/blobs/uploads/u1?_state=s' } };
      // The first PUT: the token was revoked meanwhile.
      if (req.method === 'PUT' && !refused) {
        refused = true;
        return { status: 401, headers: { 'www-authenticate': `Bearer realm="${AUTH}/token",service="reg",error="invalid_token"` } };
      }
      return { status: 201 };
    });
    const c = client();
    const session = await startUpload(c, 'x');
    expect(session.mounted).toBe(false);
    let opened = 0;
    const body = () => (opened++, Readable.from([Buffer.from('blob')]));
    await putMonolithic(c, 'x', (session as { location: URL }).location, body, 4, `sha256:${'0'.repeat(64)}`);
    expect(opened).toBe(2);
    expect(tokens).toBe(2);
  });

  it('a 401 on a one-shot stream is a retryable StaleCredentialsError (the token was dropped)', async () => {
    let n = 0;
    mockOrigin(agent, AUTH, () => ({ status: 200, body: { token: `t${++n}` } }));
    mockOrigin(agent, REG, (req) =>
      req.method === 'PUT' || !req.headers.authorization ? { status: 401, headers: { 'www-authenticate': `Bearer realm="${AUTH}/token",service="reg"` } } : { status: 200 },
    );
    const c = client();
    const err = await putMonolithic(c, 'x', new URL(`${REG}/v2/x/blobs/uploads/u`), Readable.from([Buffer.from('b')]), 1, `sha256:${'0'.repeat(64)}`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StaleCredentialsError);
    expect((err as StaleCredentialsError).retryable).toBe(true);
  });

  it('invalidates a revoked short-lived credential (TCR temporary token) on a token-service 401 and fetches a fresh one', async () => {
    let minted = 0;
    const api = { createInstanceToken: async () => ({ username: 'tcr$user', password: `temp${++minted}`, expiresAt: new Date(Date.now() + 3_600_000) }) };
    const source = new TcrCredentialSource(api);
    // temp1 has been revoked at the token service; temp2 is good.
    const good = `Basic ${Buffer.from('tcr$user:temp2').toString('base64')}`;
    mockOrigin(agent, AUTH, (req) => (req.headers.authorization === good ? { status: 200, body: { token: 'ok' } } : { status: 401, body: { errors: [{ code: 'UNAUTHORIZED' }] } }));
    mockOrigin(agent, REG, (req) =>
      req.headers.authorization === 'Bearer ok' ? { status: 200, body: {} } : { status: 401, headers: { 'www-authenticate': `Bearer realm="${AUTH}/token",service="tcr"` } },
    );
    await client({ credentials: source.source }).ping();
    expect(minted).toBe(2);
  });

  it('reports a token service that refuses the credentials as TokenRefusedError', async () => {
    mockOrigin(agent, AUTH, () => ({ status: 401, body: { errors: [{ code: 'UNAUTHORIZED', message: 'bad' }] } }));
    mockOrigin(agent, REG, () => ({ status: 401, headers: { 'www-authenticate': `Bearer realm="${AUTH}/token"` } }));
    await expect(client().ping()).rejects.toBeInstanceOf(TokenRefusedError);
  });

  it('keeps the token cache bounded (LRU)', async () => {
    mockOrigin(agent, AUTH, (req) => ({ status: 200, body: { token: `t-${req.path}`, expires_in: 3600 } }));
    mockOrigin(agent, REG, (req) =>
      req.headers.authorization?.startsWith('Bearer ') ? { status: 200, body: { tags: [] } } : { status: 401, headers: { 'www-authenticate': `Bearer realm="${AUTH}/token"` } },
    );
    const small = new RegistryClient({ name: 'reg', url: REG, dispatcher: agent, credentials: creds, retryDelayMs: 1 });
    (small as unknown as { auth: { maxTokens: number } }).auth.maxTokens = 8;
    for (let i = 0; i < 20; i++) await small.listTags(`repo${i}`);
    expect((small as unknown as { auth: { cachedTokens: number } }).auth.cachedTokens).toBe(8);
    small.clearTokens();
    expect((small as unknown as { auth: { cachedTokens: number } }).auth.cachedTokens).toBe(0);
  });
});

describe('credentials stay on their origin', () => {
  it('follows a blob redirect to another origin without Authorization, and a same-origin one with it', async () => {
    const other = mockOrigin(agent, OTHER, () => ({ status: 200, body: 'data' }));
    const reg = basicRegistry((req) =>
      req.path.includes('/blobs/sha256:aa')
        ? { status: 307, headers: { location: `${OTHER}/bucket/aa?X-Amz-Signature=s` } }
        : req.path.includes('/blobs/sha256:bb')
          ? { status: 302, headers: { location: '/v2/x/blobs/moved' } }
          : { status: 200, body: 'moved-data' },
    );
    const c = client();
    const a = await c.getBlob('x', 'sha256:aa');
    expect(await readBody({ body: a.body as never, statusCode: 200 }, 100, { registry: 'reg' }).then(String)).toBe('data');
    expect(other).toHaveLength(1);
    expect(other[0]!.headers.authorization).toBeUndefined();
    const b = await c.getBlob('x', 'sha256:bb');
    b.body.resume();
    expect(reg.at(-1)).toMatchObject({ path: '/v2/x/blobs/moved' });
    expect(reg.at(-1)!.headers.authorization).toBe(BASIC);
  });

  it('refuses a cross-origin Link in the catalog and tags/list: the other origin is never contacted', async () => {
    const other = mockOrigin(agent, OTHER, () => ({ status: 200, body: { repositories: ['evil'] } }));
    basicRegistry((req) => ({
      status: 200,
      headers: { link: `<${OTHER}/v2/_catalog?last=a&n=1000>; rel="next"` },
      body: req.path.includes('_catalog') ? { repositories: ['a'] } : { tags: ['1'] },
    }));
    const c = client();
    const names: string[] = [];
    const err = await (async () => {
      for await (const n of c.catalog()) names.push(n);
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UntrustedUrlError);
    expect(names).toEqual(['a']);
    await expect(c.listTags('a')).rejects.toBeInstanceOf(UntrustedUrlError);
    expect(other).toHaveLength(0);
  });

  it('ends a listing whose Link loops, and one with more pages than the cap', async () => {
    basicRegistry((req) => ({ status: 200, headers: { link: `</v2/x/tags/list?n=1&last=${req.path.includes('last=1') ? '2' : '1'}>; rel="next"` }, body: { tags: ['t'] } }));
    await expect(client().listTags('x')).rejects.toThrow(/loops/);
    let page = 0;
    agent = mockAgent();
    basicRegistry(() => ({ status: 200, headers: { link: `</v2/x/tags/list?n=1&last=${++page}>; rel="next"` }, body: { tags: [`t${page}`] } }));
    await expect(client({ maxPages: 5 }).listTags('x')).rejects.toThrow(/more than 5 pages/);
  });

  it('sends no credentials to an upload Location on another origin', async () => {
    const other = mockOrigin(agent, OTHER, () => ({ status: 201 }));
    basicRegistry(() => ({ status: 202, headers: { location: `${OTHER}/upload/u1?_state=s` } }));
    const c = client();
    const s = await startUpload(c, 'x');
    await putMonolithic(c, 'x', (s as { location: URL }).location, Buffer.from('b'), 1, `sha256:${'0'.repeat(64)}`);
    expect(other).toHaveLength(1);
    expect(noAuth(other)).toHaveLength(0);
  });

  it('refuses a cross-origin Harbor `next` link and sends Harbor credentials only to Harbor', async () => {
    const other = mockOrigin(agent, OTHER, () => ({ status: 200, body: [] }));
    mockOrigin(agent, REG, () => ({ status: 200, headers: { link: `<${OTHER}/api/v2.0/projects?page=2&page_size=100>; rel="next"` }, body: [{ name: 'p' }] }));
    const api = new HarborApi({ url: REG, username: 'ferry', password: 's3cret', registry: 'h', dispatcher: agent, retryDelayMs: 1 });
    const err = await (async () => {
      for await (const _ of api.listProjects());
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UntrustedUrlError);
    expect(other).toHaveLength(0);
  });
});

describe('ChartMuseum downloads', () => {
  async function download(url: string): Promise<void> {
    const source = client();
    const ctx = {
      item: { rule: 'r', sourceRepository: 'p/c', destinationRepository: 'p/c', tags: ['1.0.0'], chartMuseum: { project: 'p', name: 'c', version: '1.0.0', url } },
      source,
      destination: source,
      destinationKey: 'd',
      override: false,
      stats: { addArtifact: () => undefined },
    } as unknown as ArtifactContext;
    const result = await new ChartMuseumCopier({ credentials: creds, blobs: {} as BlobCopier }).copy(ctx);
    expect(result.status).toBe('failed'); // not a chart archive: only the request matters here
  }

  it('sends the source credentials with a chart URL on the registry origin only, not with an absolute URL elsewhere', async () => {
    const reg = mockOrigin(agent, REG, () => ({ status: 200, body: 'not a tgz' }));
    const other = mockOrigin(agent, OTHER, () => ({ status: 200, body: 'not a tgz' }));
    await download(`${REG}/chartrepo/p/charts/c-1.0.0.tgz`);
    await download(`${OTHER}/charts/c-1.0.0.tgz`);
    expect(reg.map((r) => r.headers.authorization)).toEqual([BASIC]);
    expect(other).toHaveLength(1);
    expect(other[0]!.headers.authorization).toBeUndefined();
  });
});

describe('token realm rules', () => {
  const challenge = (realm: string) => () => ({ status: 401, headers: { 'www-authenticate': `Bearer realm="${realm}",service="reg"` } });

  it('refuses an http realm for an https registry unless insecure', async () => {
    const plain = mockOrigin(agent, 'http://auth.example', () => ({ status: 200, body: { token: 't' } }));
    mockOrigin(agent, REG, (req) => (req.headers.authorization === 'Bearer t' ? { status: 200 } : challenge('http://auth.example/token')()));
    await expect(client().ping()).rejects.toThrow(/http token realm/);
    expect(plain).toHaveLength(0);
    await client({ insecure: true }).ping();
    expect(plain).toHaveLength(1);
  });

  it('refuses link-local and metadata realms', async () => {
    for (const realm of ['https://169.254.169.254/token', 'https://[fe80::1]/token', 'https://metadata.google.internal/token', 'https://100.100.100.200/t']) {
      const a = mockAgent();
      mockOrigin(a, REG, challenge(realm));
      const err = await new RegistryClient({ name: 'reg', url: REG, dispatcher: a, credentials: creds, retryDelayMs: 1 }).ping().catch((e: unknown) => e);
      expect(err, realm).toBeInstanceOf(UntrustedUrlError);
      await a.close();
    }
    expect(isLinkLocalOrMetadata('::ffff:169.254.169.254')).toBe(true);
    expect(isLinkLocalOrMetadata('::ffff:a9fe:a9fe')).toBe(true);
    expect(isLinkLocalOrMetadata('auth.example')).toBe(false);
    expect(isLinkLocalOrMetadata('10.0.0.1')).toBe(false);
  });

  it('ignores a challenge from another origin (a redirect target answering 401 cannot re-point the realm)', async () => {
    const evil = mockOrigin(agent, 'https://evil.example', () => ({ status: 200, body: { token: 'x' } }));
    mockOrigin(agent, OTHER, challenge('https://evil.example/token'));
    basicRegistry(() => ({ status: 307, headers: { location: `${OTHER}/bucket/aa` } }));
    const err = await client().getBlob('x', 'sha256:aa').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).status).toBe(401);
    expect(evil).toHaveLength(0);
  });
});

describe('content checks', () => {
  const doc = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: {}, layers: [] }));
  const sha512 = `sha512:${createHash('sha512').update(doc).digest('hex')}`;

  it('verifies manifests pulled by a sha512 digest and refuses unknown algorithms', async () => {
    basicRegistry(() => ({ status: 200, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }, body: doc }));
    const c = client();
    expect((await c.getManifest('x', sha512)).digest).toBe(sha512);
    const wrong = `sha512:${'0'.repeat(128)}`;
    await expect(c.getManifest('x', wrong)).rejects.toBeInstanceOf(DigestMismatchError);
    await expect(c.getManifest('x', `blake3:${'0'.repeat(64)}`)).rejects.toBeInstanceOf(UnsupportedDigestError);
  });

  it('reads bodies bounded, with one typed overflow error', async () => {
    mockOrigin(agent, REG, () => ({ status: 200, body: Buffer.alloc(2000) }));
    const t = new Transport({ name: 'reg', dispatcher: agent });
    const res = await t.send({ method: 'GET', url: new URL(`${REG}/big`) });
    await expect(readBody(res, 1000, { registry: 'reg', what: 'answer' })).rejects.toBeInstanceOf(BodyTooLargeError);
  });

  it('strips control characters from registry error text and caps its length', async () => {
    const nasty = `denied\u001b[31m\r\nFAKE REPORT LINE\u0000${'x'.repeat(5000)}`;
    basicRegistry(() => ({ status: 403, body: { errors: [{ code: 'DENIED', message: nasty }] } }));
    const err = (await client().ping().catch((e: unknown) => e)) as RegistryError;
    // eslint-disable-next-line no-control-regex
    expect(err.message).not.toMatch(/[\u0000-\u001f]/);
    expect(err.message.length).toBeLessThan(500);
    expect(err.detail).toMatch(/^denied \[31m FAKE REPORT LINE x+…$/);
    expect(parseErrorBody(`<html>\n${'y'.repeat(1000)}`).message!.length).toBeLessThanOrEqual(200);
    expect(remoteText('a\tb\nc')).toBe('a b c');
  });
});

describe('limits, counts and the observer', () => {
  it('counts requests per registry and kind, and reports each one to the observer without the query', async () => {
    basicRegistry(() => ({ status: 200, body: { tags: [] } }));
    const counter = new RequestCounter();
    const events: RequestEvent[] = [];
    const c = client({ counter, observer: (e) => events.push(e) });
    await c.ping();
    await c.listTags('x');
    await c.headBlob('x', 'sha256:aa').catch(() => undefined);
    expect(counter.counts()).toEqual({ reg: { 'blob HEAD': 1, 'ping GET': 2, 'tags GET': 1 } });
    expect(c.requestCounts()).toEqual(counter.counts().reg);
    expect(events.map((e) => `${e.kind} ${e.status}`)).toEqual(['ping 401', 'ping 200', 'tags 200', 'blob 200']);
    expect(events[2]!.url).toBe(`${REG}/v2/x/tags/list?…`);
    expect(JSON.stringify(events)).not.toContain('s3cret');
  });

  it('holds requests in flight to maxConcurrency', async () => {
    let inFlight = 0;
    let peak = 0;
    const pool = agent.get(REG);
    pool
      .intercept({ path: () => true })
      .reply(() => {
        inFlight++;
        peak = Math.max(peak, inFlight);
        setTimeout(() => inFlight--, 5);
        return { statusCode: 200, data: '' };
      })
      .delay(10)
      .persist();
    const t = new Transport({ name: 'reg', dispatcher: agent, limits: { maxConcurrency: 2 } });
    await Promise.all(Array.from({ length: 8 }, () => t.send({ method: 'GET', url: new URL(`${REG}/x`) }).then((r) => r.body.dump())));
    expect(peak).toBeLessThanOrEqual(2);
  });

  it('budgets blob-body bytes separately: a big body waits for the budget, then runs alone', async () => {
    const budget = new ByteBudget(100);
    const a = await budget.acquire(60);
    let bGranted = false;
    const b = budget.acquire(60).then((r) => ((bGranted = true), r));
    await new Promise((r) => setTimeout(r, 5));
    expect(bGranted).toBe(false);
    a();
    (await b)();
    const huge = await budget.acquire(10_000); // larger than the budget: alone, never refused
    expect(budget.inUse).toBe(100);
    huge();
    expect(budget.inUse).toBe(0);
  });
});

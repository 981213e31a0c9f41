// Proves the integration-test helpers against the real registry binary: if these fail, every
// integration test built on them is suspect.
import { X509Certificate } from 'node:crypto';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  MT,
  RegistryHttpError,
  buildArtifact,
  buildHelmChart,
  buildImage,
  buildIndex,
  buildMultiArch,
  buildSchema1,
  buildSignature,
  catalog,
  decodeJwt,
  deleteManifest,
  getBlob,
  getFreePort,
  getManifest,
  headBlob,
  headManifest,
  listTags,
  parseChallenge,
  pushBlob,
  pushImage,
  randomBlob,
  rawClient,
  sha256,
  signingMaterial,
  startProxy,
  startRedirectingRegistry,
  startRegistry,
  startTokenIssuer,
  startWanProxy,
  type TestRegistry,
} from './helpers/index.js';

describe('registry without auth', () => {
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startRegistry();
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it('pushes an OCI image and reads back identical bytes', async () => {
    const img = buildImage({ layers: [100, randomBlob(3000)] });
    const { digest } = await pushImage(reg, 'library/alpine', '3.20', img);
    expect(digest).toBe(img.digest);
    const got = await getManifest(reg, 'library/alpine', '3.20');
    expect(got).not.toBeNull();
    expect(got!.digest).toBe(img.digest);
    expect(got!.mediaType).toBe(MT.ociManifest);
    expect(got!.bytes.equals(img.manifest)).toBe(true);
    for (const layer of img.layers) {
      expect(await headBlob(reg, 'library/alpine', layer.digest)).toBe(true);
      expect(sha256((await getBlob(reg, 'library/alpine', layer.digest))!)).toBe(layer.digest);
    }
    expect(await headManifest(reg, 'library/alpine', '3.20')).toEqual({ digest: img.digest, mediaType: MT.ociManifest, size: img.manifest.length });
    expect(await listTags(reg, 'library/alpine')).toEqual(['3.20']);
    expect(await catalog(reg)).toContain('library/alpine');
    expect(await getManifest(reg, 'library/alpine', 'nope')).toBeNull();
    expect(await headBlob(reg, 'library/alpine', sha256('absent'))).toBe(false);
    expect(await listTags(reg, 'no/such/repo')).toEqual([]);
  });

  it('skips blobs the registry already has', async () => {
    const bytes = randomBlob(500);
    expect(await pushBlob(reg, 'skip/me', bytes)).toBe(true);
    expect(await pushBlob(reg, 'skip/me', bytes)).toBe(false);
  });

  it('pushes an OCI index and a Docker manifest list with two platforms', async () => {
    const oci = buildMultiArch('oci');
    expect((await pushImage(reg, 'multi/oci', 'v1', oci)).digest).toBe(oci.digest);
    const docker = buildMultiArch('docker');
    expect((await pushImage(reg, 'multi/docker', 'v1', docker)).digest).toBe(docker.digest);

    const list = await getManifest(reg, 'multi/docker', 'v1');
    expect(list?.mediaType).toBe(MT.dockerList);
    const parsed = JSON.parse(list!.bytes.toString()) as { manifests: { digest: string; platform: { architecture: string; variant?: string } }[] };
    expect(parsed.manifests.map((m) => m.platform.architecture)).toEqual(['amd64', 'arm64']);
    expect(parsed.manifests[1]?.platform.variant).toBe('v8');
    for (const child of docker.children) {
      expect((await getManifest(reg, 'multi/docker', child.digest))?.digest).toBe(child.digest);
    }
    expect((await getManifest(reg, 'multi/oci', 'v1'))?.mediaType).toBe(MT.ociIndex);
  });

  it('pushes artifacts: a Helm chart, a cosign signature, an OCI 1.1 referrer', async () => {
    const chart = buildHelmChart({ name: 'nginx', version: '1.2.3+build.4' });
    expect(chart.tag).toBe('1.2.3_build.4');
    await pushImage(reg, 'charts/nginx', chart.tag, chart);
    const got = await getManifest(reg, 'charts/nginx', chart.tag);
    expect(got?.digest).toBe(chart.digest);
    const doc = JSON.parse(got!.bytes.toString()) as Record<string, unknown>;
    expect(doc.mediaType).toBeUndefined(); // as helm writes it
    expect((doc.config as { mediaType: string }).mediaType).toBe(MT.helmConfig);
    // The chart layer is a real gzip'd tar.
    expect(chart.layers[0]!.bytes.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));

    const img = buildImage({ format: 'docker' });
    await pushImage(reg, 'signed/app', 'v1', img);
    const sig = buildSignature(img.descriptor);
    expect(sig.tag).toBe(`${img.digest.replace(':', '-')}.sig`);
    await pushImage(reg, 'signed/app', sig.tag, sig);
    expect((await getManifest(reg, 'signed/app', sig.tag))?.digest).toBe(sig.digest);

    const ref = buildSignature(img.descriptor, { referrer: true });
    await pushImage(reg, 'signed/app', undefined, ref);
    const refDoc = JSON.parse((await getManifest(reg, 'signed/app', ref.digest))!.bytes.toString()) as { subject: { digest: string }; artifactType: string };
    expect(refDoc.subject.digest).toBe(img.digest);
    expect(refDoc.artifactType).toBe('application/vnd.dev.cosign.artifact.sig.v1+json');

    const sbom = buildArtifact(MT.ociEmpty, [{ mediaType: 'application/spdx+json', bytes: Buffer.from('{"spdxVersion":"SPDX-2.3"}') }], { artifactType: 'application/spdx+json', subject: img.descriptor });
    expect((await pushImage(reg, 'signed/app', 'sbom', sbom)).digest).toBe(sbom.digest);
    expect(sbom.config.bytes.toString()).toBe('{}');
  });

  it('refuses Docker schema 1 pushes by default (distribution 2.8: HTTP 500 UNKNOWN!)', async () => {
    const s1 = buildSchema1('old/app', 'v1');
    // Not MANIFEST_INVALID: 2.8 maps ErrSchemaV1Unsupported to a generic 500; only its log says why.
    await expect(pushImage(reg, 'old/app', 'v1', s1)).rejects.toSatisfy((e: unknown) => e instanceof RegistryHttpError && e.status === 500 && /UNKNOWN/.test(e.body));
    expect(reg.logs()).toContain('manifest schema v1 unsupported');
  });

  it('answers 404 for an OCI manifest when Accept does not list OCI types (distribution 2.8)', async () => {
    const img = buildImage({ layers: [10] });
    await pushImage(reg, 'accept/oci', 'v1', img);
    const c = rawClient(reg);
    expect((await c.request('GET', '/v2/accept/oci/manifests/v1')).status).toBe(404);
    expect((await c.request('GET', '/v2/accept/oci/manifests/v1', { headers: { accept: MT.ociManifest } })).status).toBe(200);
  });

  it('deletes manifests (storage.delete.enabled)', async () => {
    const img = buildImage({ layers: [10] });
    await pushImage(reg, 'del/me', 'x', img);
    expect(await deleteManifest(reg, 'del/me', img.digest)).toBe(true);
    expect(await getManifest(reg, 'del/me', img.digest)).toBeNull();
  });

  it('restarts at the same address over the same storage', async () => {
    const img = buildImage({ layers: [10] });
    await pushImage(reg, 'survives/restart', 'x', img);
    const pid = reg.pid;
    await reg.restart();
    expect(reg.pid).not.toBe(pid);
    expect((await getManifest(reg, 'survives/restart', 'x'))?.digest).toBe(img.digest);
  });
});

describe('registry with schema 1 enabled', () => {
  it('accepts a signed schema 1 manifest and reports the digest of its unsigned payload', async () => {
    const reg = await startRegistry({ schema1: true });
    try {
      const s1 = buildSchema1('old/app', 'v1', { layers: [300, 400] });
      expect(s1.digest).toBe(sha256(s1.payload));
      expect(s1.digest).not.toBe(sha256(s1.manifest));
      expect((await pushImage(reg, 'old/app', 'v1', s1)).digest).toBe(s1.digest);
      const got = await getManifest(reg, 'old/app', 'v1');
      expect(got?.mediaType).toBe(MT.dockerSchema1Signed);
      expect(got?.digest).toBe(s1.digest);
    } finally {
      await reg.stop();
    }
  });
});

describe('registry with Basic auth', () => {
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startRegistry({ auth: 'basic', users: [{ username: 'ferry', password: 's3cret' }, { username: 'other', password: 'pw2' }] });
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it('pushes and pulls with the right password', async () => {
    expect(reg.username).toBe('ferry');
    const img = buildImage({ format: 'docker' });
    await pushImage(reg, 'team/app', '1', img);
    expect((await getManifest(reg, 'team/app', '1'))?.digest).toBe(img.digest);
    expect((await getManifest({ url: reg.url, username: 'other', password: 'pw2' }, 'team/app', '1'))?.digest).toBe(img.digest);
  });

  it('answers 401 to a wrong password and to anonymous requests', async () => {
    const wrong = { url: reg.url, username: 'ferry', password: 'wrong' };
    await expect(getManifest(wrong, 'team/app', '1')).rejects.toSatisfy((e: unknown) => e instanceof RegistryHttpError && e.status === 401);
    const anon = await rawClient({ url: reg.url }).request('GET', '/v2/');
    expect(anon.status).toBe(401);
    expect(parseChallenge(String(anon.headers['www-authenticate']))).toEqual({ scheme: 'basic', params: { realm: 'ferry-test-registry' } });
  });
});

describe('registry with token auth', () => {
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startRegistry({
      auth: 'token',
      users: [
        { username: 'ferry', password: 's3cret' },
        { username: 'reader', password: 'r', access: ['pull'] },
        // pull anywhere, push only to its own namespace: for cross-repository mount tests
        { username: 'scoped', password: 's', access: (_type, name) => (name.startsWith('scoped/') ? ['pull', 'push'] : ['pull']) },
      ],
    });
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it('signs tokens the registry accepts: push and pull through the realm', async () => {
    const issuer = reg.issuer!;
    issuer.resetStats();
    const img = buildIndex([buildImage({ format: 'oci' }), buildImage({ format: 'oci', platform: { os: 'linux', architecture: 'arm64' } })], 'oci');
    await pushImage(reg, 'tok/app', 'v1', img);
    expect((await getManifest(reg, 'tok/app', 'v1'))?.digest).toBe(img.digest);
    expect(await catalog(reg)).toEqual(['tok/app']);

    // The helpers' own token requests are marked, so tests can tell them from the client's.
    expect(issuer.requests.length).toBeGreaterThan(0);
    expect(issuer.clientRequests()).toEqual([]);
    expect(issuer.requestsFor('repository:tok/app:pull,push')[0]).toMatchObject({ user: 'ferry', status: 200 });
    expect(issuer.requestsFor('registry:catalog:*')[0]?.granted).toEqual([{ type: 'registry', name: 'catalog', actions: ['*'] }]);
  });

  it('issues tokens with the claims distribution checks', async () => {
    const issuer = reg.issuer!;
    const res = await request(`${issuer.realm}?service=${issuer.service}&scope=repository:a/b:pull,push,delete&scope=repository:c:pull`, {
      headers: { authorization: `Basic ${Buffer.from('reader:r').toString('base64')}` },
    });
    expect(res.statusCode).toBe(200);
    const body = (await res.body.json()) as { token: string; access_token: string; expires_in: number; issued_at: string };
    expect(body.access_token).toBe(body.token);
    expect(body.expires_in).toBe(issuer.tokenTtlSeconds);
    const { header, claims } = decodeJwt(body.token);
    expect(header.alg).toBe('RS256');
    expect(Array.isArray(header.x5c)).toBe(true);
    expect(claims).toMatchObject({ iss: issuer.issuer, sub: 'reader', aud: issuer.service });
    expect(claims.access).toEqual([
      { type: 'repository', name: 'a/b', actions: ['pull'] },
      { type: 'repository', name: 'c', actions: ['pull'] },
    ]);
    // The x5c certificate is the one in the registry's rootcertbundle, and it signed itself.
    const cert = new X509Certificate(Buffer.from((header.x5c as string[])[0]!, 'base64'));
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(cert.toString()).toBe(new X509Certificate(issuer.certificatePem).toString());
  });

  it('refuses wrong passwords with 401 and gives anonymous callers an empty token', async () => {
    const issuer = reg.issuer!;
    const wrong = await request(`${issuer.realm}?service=${issuer.service}&scope=repository:tok/app:pull`, { headers: { authorization: `Basic ${Buffer.from('ferry:nope').toString('base64')}` } });
    expect(wrong.statusCode).toBe(401);
    await wrong.body.dump();
    await expect(getManifest({ url: reg.url, username: 'ferry', password: 'nope' }, 'tok/app', 'v1')).rejects.toThrow(/HTTP 401/);
    expect(issuer.requests.at(-1)).toMatchObject({ attemptedUser: 'ferry', status: 401 });

    // Anonymous: a token without access, which the registry then refuses.
    await expect(getManifest({ url: reg.url }, 'tok/app', 'v1')).rejects.toSatisfy((e: unknown) => e instanceof RegistryHttpError && e.status === 401);
    expect(issuer.requests.at(-1)).toMatchObject({ status: 200, granted: [] });
  });

  it('grants only the user’s actions (pull-only users cannot push)', async () => {
    const reader = { url: reg.url, username: 'reader', password: 'r' };
    expect((await getManifest(reader, 'tok/app', 'v1')) !== null).toBe(true);
    await expect(pushImage(reader, 'tok/other', 'x', buildImage({ layers: [10] }))).rejects.toThrow(/401/);
    const scoped = { url: reg.url, username: 'scoped', password: 's' };
    await pushImage(scoped, 'scoped/app', 'x', buildImage({ layers: [10] }));
    await expect(pushImage(scoped, 'elsewhere/app', 'x', buildImage({ layers: [10] }))).rejects.toThrow(/401/);
  });

  it('makes short-lived tokens really expire at the registry (despite its 60 s leeway)', async () => {
    const issuer = reg.issuer!;
    const scope = 'repository:tok/app:pull';
    const get = async (token: string): Promise<number> => {
      const res = await request(`${reg.url}/v2/tok/app/tags/list`, { headers: { authorization: `Bearer ${token}` } });
      await res.body.dump();
      return res.statusCode;
    };
    expect(await get(issuer.mint('ferry', [scope], 30).token)).toBe(200);
    expect(await get(issuer.mint('ferry', [scope], -2).token)).toBe(401);
    // Without compensation the registry's leeway would accept a token that "expired" 2 s ago.
    issuer.compensateRegistryLeeway = false;
    try {
      expect(await get(issuer.mint('ferry', [scope], -2).token)).toBe(200);
    } finally {
      issuer.compensateRegistryLeeway = true;
    }
  });

  it('can share one issuer between registries, and answers OAuth2 POST when asked to', async () => {
    const issuer = await startTokenIssuer({ users: [{ username: 'u', password: 'p' }], oauthPost: true });
    const [a, b] = await Promise.all([startRegistry({ auth: 'token', issuer }), startRegistry({ auth: 'token', issuer })]);
    try {
      const img = buildImage({ layers: [50] });
      await pushImage({ url: a!.url, username: 'u', password: 'p' }, 'x/y', '1', img);
      await pushImage({ url: b!.url, username: 'u', password: 'p' }, 'x/y', '1', img);
      const res = await request(issuer.realm, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'password', username: 'u', password: 'p', service: issuer.service, scope: 'repository:x/y:pull', client_id: 'ferry' }).toString(),
      });
      const body = (await res.body.json()) as { access_token: string; refresh_token: string };
      expect(res.statusCode).toBe(200);
      expect(body.refresh_token).toBeTruthy();
      const tags = await request(`${a!.url}/v2/x/y/tags/list`, { headers: { authorization: `Bearer ${body.access_token}` } });
      expect(await tags.body.json()).toEqual({ name: 'x/y', tags: ['1'] });
    } finally {
      await Promise.all([a?.stop(), b?.stop()]);
      await issuer.stop();
    }
  });
});

describe('fault-injecting proxy', () => {
  let reg: TestRegistry;
  const img = buildImage({ layers: [64 * 1024, 1000] });
  beforeAll(async () => {
    reg = await startRegistry();
    await pushImage(reg, 'proxied/app', 'v1', img);
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it('forwards transparently and counts requests and bytes', async () => {
    const proxy = await startProxy(reg.url);
    try {
      const layer = img.layers[0]!;
      expect((await getManifest(proxy, 'proxied/app', 'v1'))?.digest).toBe(img.digest);
      expect(sha256((await getBlob(proxy, 'proxied/app', layer.digest))!)).toBe(layer.digest);
      // Uploads go through too, with Location rewritten to the proxy.
      const blob = randomBlob(10_000);
      await pushBlob(proxy, 'proxied/up', blob);
      expect(await headBlob(reg, 'proxied/up', sha256(blob))).toBe(true);
      expect(proxy.count(/^PUT \/v2\/proxied\/up\/blobs\/uploads\//)).toBe(1);
      expect(proxy.bytesUp).toBe(10_000);
      expect(proxy.bytesDown).toBeGreaterThanOrEqual(64 * 1024);
    } finally {
      await proxy.stop();
    }
  });

  it('flips a byte in blob bodies (the lying source)', async () => {
    const proxy = await startProxy(reg.url, { flipByteInBlobs: true });
    try {
      const layer = img.layers[0]!;
      const got = (await getBlob(proxy, 'proxied/app', layer.digest))!;
      expect(got.length).toBe(layer.bytes.length);
      expect(sha256(got)).not.toBe(layer.digest);
      expect(proxy.flips).toBe(1);
      // Manifests are left alone.
      expect((await getManifest(proxy, 'proxied/app', 'v1'))?.bytes.equals(img.manifest)).toBe(true);
      proxy.faults.flipByteInBlobs = false;
      expect(sha256((await getBlob(proxy, 'proxied/app', layer.digest))!)).toBe(layer.digest);
    } finally {
      await proxy.stop();
    }
  });

  it('cuts downloads after N bytes, a given number of times', async () => {
    const proxy = await startProxy(reg.url, { resetAfterBytes: 1000, resetTimes: 1 });
    try {
      const layer = img.layers[0]!;
      await expect(getBlob(proxy, 'proxied/app', layer.digest)).rejects.toThrow();
      expect(proxy.resets).toBe(1);
      expect(proxy.bytesDown).toBe(1000);
      expect(sha256((await getBlob(proxy, 'proxied/app', layer.digest))!)).toBe(layer.digest);
    } finally {
      await proxy.stop();
    }
  });

  it('cuts uploads after N request-body bytes', async () => {
    const proxy = await startProxy(reg.url, { resetAfterBytes: 4096, resetOn: 'upload', resetTimes: 1 });
    try {
      const blob = randomBlob(50_000);
      await expect(pushBlob(proxy, 'proxied/cut', blob)).rejects.toThrow();
      expect(proxy.resets).toBe(1);
      expect(await headBlob(reg, 'proxied/cut', sha256(blob))).toBe(false);
      expect(await pushBlob(proxy, 'proxied/cut', blob)).toBe(true);
      expect(await headBlob(reg, 'proxied/cut', sha256(blob))).toBe(true);
    } finally {
      await proxy.stop();
    }
  });

  it('answers scripted statuses with Retry-After, then forwards; stalls on demand', async () => {
    const proxy = await startProxy(reg.url, { statusSequence: { match: /^GET \/v2\/proxied\/app\/manifests\//, statuses: [429, 503], retryAfter: 2 } });
    try {
      const c = rawClient(proxy);
      const get = (): ReturnType<typeof c.request> => c.request('GET', '/v2/proxied/app/manifests/v1', { headers: { accept: MT.ociManifest } });
      const first = await get();
      expect(first.status).toBe(429);
      expect(first.headers['retry-after']).toBe('2');
      expect(JSON.parse(first.body.toString()).errors[0].code).toBe('TOOMANYREQUESTS');
      expect((await get()).status).toBe(503);
      expect((await get()).status).toBe(200);
      expect(proxy.injectedStatuses).toBe(2);

      proxy.setFaults({ stallMs: 150 });
      const t0 = performance.now();
      expect((await c.request('GET', '/v2/')).status).toBe(200);
      expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
    } finally {
      await proxy.stop();
    }
  });
});

describe('redirecting registry', () => {
  it('redirects blob GETs to another host and records leaked Authorization', async () => {
    const reg = await startRegistry({ auth: 'basic' });
    const img = buildImage({ layers: [5000] });
    await pushImage(reg, 'redir/app', '1', img);
    const redirecting = await startRedirectingRegistry(reg.url);
    try {
      expect(redirecting.otherUrl).not.toContain('127.0.0.1');
      const layer = img.layers[0]!;
      // The raw client drops Authorization when the host changes.
      const good = await getBlob({ url: redirecting.url, username: 'ferry', password: 's3cret' }, 'redir/app', layer.digest);
      expect(sha256(good!)).toBe(layer.digest);
      expect(redirecting.redirects).toBe(1);
      expect(redirecting.authorizationSeenByOtherHost).toBe(false);
      expect(redirecting.otherHostRequests).toHaveLength(1);
      // Unauthenticated requests are not redirected: the challenge comes back as usual.
      expect((await rawClient({ url: redirecting.url }).request('GET', `/v2/redir/app/blobs/${layer.digest}`)).status).toBe(401);

      // A careless client that forwards Authorization is caught (and refused, like S3 does).
      const auth = `Basic ${Buffer.from('ferry:s3cret').toString('base64')}`;
      const first = await request(`${redirecting.url}/v2/redir/app/blobs/${layer.digest}`, { headers: { authorization: auth } });
      await first.body.dump();
      expect(first.statusCode).toBe(307);
      const second = await request(String(first.headers.location), { headers: { authorization: auth } });
      await second.body.dump();
      expect(second.statusCode).toBe(400);
      expect(redirecting.authorizationSeenByOtherHost).toBe(true);
    } finally {
      await redirecting.stop();
      await reg.stop();
    }
  });
});

describe('WAN emulator', () => {
  it('adds one-way delay in each direction and caps bandwidth', async () => {
    const reg = await startRegistry();
    const img = buildImage({ layers: [200_000] });
    await pushImage(reg, 'wan/app', '1', img);
    const wan = await startWanProxy({ host: '127.0.0.1', port: reg.port }, { oneWayDelayMs: 40, bandwidthBytesPerSec: 0 });
    try {
      // One fresh connection per request: request and answer each cross the link once (>= 2 x 40 ms).
      let t0 = performance.now();
      const res = await request(`${wan.url}/v2/`, { reset: true });
      await res.body.dump();
      expect(res.statusCode).toBe(200);
      expect(performance.now() - t0).toBeGreaterThanOrEqual(78);

      // 200 kB at 1 MB/s: about 200 ms on the wire, plus delay.
      wan.options = { oneWayDelayMs: 10, bandwidthBytesPerSec: 1_000_000 };
      t0 = performance.now();
      const blob = await request(`${wan.url}/v2/wan/app/blobs/${img.layers[0]!.digest}`, { reset: true });
      const bytes = Buffer.from(await blob.body.arrayBuffer());
      expect(sha256(bytes)).toBe(img.layers[0]!.digest);
      expect(performance.now() - t0).toBeGreaterThanOrEqual(180);
      expect(wan.bytesDown).toBeGreaterThan(200_000);
      expect(wan.bytesUp).toBeGreaterThan(0);
      expect(wan.connections).toBe(2);
    } finally {
      await wan.stop();
      await reg.stop();
    }
  });
});

describe('small pieces', () => {
  it('hands out distinct free ports and reuses one signing key per process', async () => {
    const ports = await Promise.all([getFreePort(), getFreePort(), getFreePort()]);
    expect(new Set(ports).size).toBe(3);
    expect(await signingMaterial()).toBe(await signingMaterial());
  });
});

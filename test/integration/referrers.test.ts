// Signatures, attestations, SBOMs and other referrers follow their artifact, with unchanged digests:
// cosign's tag scheme, OCI 1.1 referrers through the `sha256-<hex>` fallback tag (distribution 2.8 has
// no Referrers API) and through the Referrers API (a front that adds it to a real registry), pushed to
// destinations with and without `subject` processing; recursion, index children, reruns, failures.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { Engine } from '../../src/engine/engine.js';
import { formatTextReport } from '../../src/engine/report.js';
import {
  type Descriptor,
  MT,
  type TestImage,
  type TestRegistry,
  buildArtifact,
  buildImage,
  buildIndex,
  buildSignature,
  getManifest,
  listTags,
  pushImage,
  rawClient,
  randomBlob,
  startProxy,
  startRegistry,
} from '../helpers/index.js';
import { type ReferrersFront, startReferrersFront } from '../helpers/referrers-front.js';

let plainSource: TestRegistry;
let plainDestination: TestRegistry;
let apiBackend: TestRegistry;
let apiDestinationBackend: TestRegistry;
let apiSource: ReferrersFront;
let apiDestination: ReferrersFront;

const tagOf = (digest: string) => digest.replace(':', '-');

function engine(source: { url: string }, destination: { url: string; username?: string; password?: string }, rule: Record<string, unknown> = {}): Engine {
  return new Engine(
    parseConfig({
      registries: {
        src: { url: source.url },
        dst: { url: destination.url, ...(destination.username ? { username: destination.username, password: destination.password } : {}) },
      },
      transfer: { concurrency: 4, retries: 1 },
      rules: [{ name: 'r', source: 'src', destination: 'dst', ...rule }],
    }),
    { stateDir: false },
  );
}

async function sync(e: Engine) {
  try {
    return await e.sync();
  } finally {
    await e.close();
  }
}

/** An SBOM-like OCI referrer of `subject`. */
function sbomReferrer(subject: Descriptor, name = 'sbom'): TestImage {
  return buildArtifact(MT.ociEmpty, [{ mediaType: 'application/spdx+json', bytes: Buffer.from(JSON.stringify({ spdxVersion: 'SPDX-2.3', name, n: randomBlob(8).toString('hex') })) }], {
    artifactType: 'application/spdx+json',
    subject,
    annotations: { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z', 'dev.ferry.test': name },
  });
}

/** The index the OCI spec's fallback tag holds for these referrers. */
function fallbackIndex(referrers: TestImage[]): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MT.ociIndex,
      manifests: referrers.map((r) => {
        const doc = JSON.parse(r.manifest.toString('utf8')) as { artifactType?: string; config: { mediaType: string }; annotations?: Record<string, string> };
        return { mediaType: r.mediaType, digest: r.digest, size: r.manifest.length, artifactType: doc.artifactType ?? doc.config.mediaType, ...(doc.annotations ? { annotations: doc.annotations } : {}) };
      }),
    }),
  );
}

async function pushIndexBytes(reg: { url: string; username?: string; password?: string }, repo: string, tag: string, bytes: Buffer): Promise<void> {
  const res = await rawClient(reg).request('PUT', `/v2/${repo}/manifests/${tag}`, { scope: `repository:${repo}:pull,push`, body: bytes, headers: { 'content-type': MT.ociIndex } });
  if (res.status !== 201) throw new Error(`push ${repo}:${tag}: ${res.status} ${res.body.toString('utf8')}`);
}

async function fallbackDigests(reg: { url: string; username?: string; password?: string }, repo: string, subject: string): Promise<string[]> {
  const m = await getManifest(reg, repo, tagOf(subject));
  if (!m) return [];
  return (JSON.parse(m.bytes.toString('utf8')) as { manifests: { digest: string }[] }).manifests.map((d) => d.digest);
}

beforeAll(async () => {
  [plainSource, plainDestination, apiBackend, apiDestinationBackend] = await Promise.all([
    startRegistry({ auth: 'none' }),
    startRegistry({ auth: 'token' }),
    startRegistry({ auth: 'none' }),
    startRegistry({ auth: 'none' }),
  ]);
  [apiSource, apiDestination] = await Promise.all([startReferrersFront(apiBackend.url), startReferrersFront(apiDestinationBackend.url)]);
}, 60_000);

afterAll(async () => {
  await Promise.all([apiSource?.stop(), apiDestination?.stop()]);
  await Promise.all([plainSource?.stop(), plainDestination?.stop(), apiBackend?.stop(), apiDestinationBackend?.stop()]);
});

describe('cosign tags and OCI referrers from a registry without the Referrers API', () => {
  const image = buildImage({ layers: [randomBlob(4000)] });
  const sig = buildSignature(image.descriptor);
  const att = { ...buildArtifact(MT.ociConfig, [{ mediaType: 'application/vnd.dsse.envelope.v1+json', bytes: Buffer.from('{"payloadType":"application/vnd.in-toto+json"}') }]), tag: `${tagOf(image.digest)}.att` };
  const sbomTag = { ...buildArtifact(MT.ociConfig, [{ mediaType: 'text/spdx', bytes: Buffer.from('SPDXVersion: SPDX-2.3') }]), tag: `${tagOf(image.digest)}.sbom` };
  const sbom = sbomReferrer(image.descriptor);
  const sbomSignature = buildSignature(sbom.descriptor); // cosign signature of the SBOM (tag scheme)
  const notation = buildArtifact(MT.ociEmpty, [{ mediaType: 'application/jose+json', bytes: Buffer.from('{"sig":"notation"}') }], {
    artifactType: 'application/vnd.cncf.notary.signature',
    subject: sbomSignature.descriptor, // an OCI referrer of the SBOM's cosign signature
  });
  const foreign = sbomReferrer(image.descriptor, 'already-at-destination');

  beforeAll(async () => {
    const repo = 'library/signed';
    await pushImage(plainSource, repo, '1.0', image);
    for (const a of [sig, att, sbomTag, sbomSignature]) await pushImage(plainSource, repo, a.tag, a);
    await pushImage(plainSource, repo, undefined, sbom);
    await pushImage(plainSource, repo, undefined, notation);
    await pushIndexBytes(plainSource, repo, tagOf(image.digest), fallbackIndex([sbom]));
    await pushIndexBytes(plainSource, repo, tagOf(sbomSignature.digest), fallbackIndex([notation]));
    // The destination already lists another referrer of the image in its fallback tag: kept.
    await pushImage(plainDestination, 'mirror/library/signed', undefined, foreign);
    await pushIndexBytes(plainDestination, 'mirror/library/signed', tagOf(image.digest), fallbackIndex([foreign]));
  });

  it('copies every referrer recursively with unchanged digests and maintains the fallback tag at the destination', async () => {
    const report = await sync(engine(plainSource, plainDestination, { filters: { repositories: ['library/signed'], tags: ['1.0'] }, destinationNamespace: 'mirror' }));
    const rule = report.rules[0]!;
    expect(rule.status).toBe('ok');
    expect(rule.items).toHaveLength(1);
    // .sig, .att, .sbom, the SBOM referrer, its cosign signature, and the notation signature of that.
    expect(rule.items[0]!.referrers).toBe(6);
    expect(rule.referrers).toBe(6);
    expect(report.totals.referrers).toBe(6);
    expect(formatTextReport(report)).toContain('6 referrer(s)');

    const dst = 'mirror/library/signed';
    for (const a of [sig, att, sbomTag, sbomSignature]) expect((await getManifest(plainDestination, dst, a.tag))?.digest).toBe(a.digest);
    for (const a of [sbom, notation]) {
      const m = await getManifest(plainDestination, dst, a.digest);
      expect(m?.bytes.equals(a.manifest)).toBe(true);
    }
    // distribution 2.8 ignores `subject`: Ferry merged into the existing fallback index and made the other.
    expect(await fallbackDigests(plainDestination, dst, image.digest)).toEqual([foreign.digest, sbom.digest]);
    expect(await fallbackDigests(plainDestination, dst, sbomSignature.digest)).toEqual([notation.digest]);
    const entry = (JSON.parse((await getManifest(plainDestination, dst, tagOf(image.digest)))!.bytes.toString('utf8')) as { manifests: Record<string, unknown>[] }).manifests[1];
    expect(entry).toEqual({ mediaType: MT.ociManifest, digest: sbom.digest, size: sbom.manifest.length, artifactType: 'application/spdx+json', annotations: { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z', 'dev.ferry.test': 'sbom' } });
  });

  it('copies nothing on a rerun (present), leaving the fallback index as it is', async () => {
    const before = await getManifest(plainDestination, 'mirror/library/signed', tagOf(image.digest));
    const report = await sync(engine(plainSource, plainDestination, { filters: { repositories: ['library/signed'], tags: ['1.0'] }, destinationNamespace: 'mirror' }));
    expect(report.rules[0]!.items[0]).toMatchObject({ status: 'present', referrers: 0 });
    expect(report.rules[0]!.blobs.uploaded).toBe(0);
    expect((await getManifest(plainDestination, 'mirror/library/signed', tagOf(image.digest)))!.digest).toBe(before!.digest);
  });

  it('copies a signature added at the source since the last run', async () => {
    const later = sbomReferrer(image.descriptor, 'later');
    await pushImage(plainSource, 'library/signed', undefined, later);
    await pushIndexBytes(plainSource, 'library/signed', tagOf(image.digest), fallbackIndex([sbom, later]));
    const report = await sync(engine(plainSource, plainDestination, { filters: { repositories: ['library/signed'], tags: ['1.0'] }, destinationNamespace: 'mirror' }));
    expect(report.rules[0]!.items[0]).toMatchObject({ status: 'present', referrers: 1 });
    expect(await fallbackDigests(plainDestination, 'mirror/library/signed', image.digest)).toEqual([foreign.digest, sbom.digest, later.digest]);
  });

  it('skips the referrer tags a plain listing yields: they travel with their subject', async () => {
    const report = await sync(engine(plainSource, plainDestination, { filters: { repositories: ['library/signed'] }, destinationNamespace: 'whole' }));
    const items = report.rules[0]!.items;
    expect(items.find((i) => i.tags[0] === '1.0')).toMatchObject({ status: 'copied', referrers: 7 }); // with the one added above
    const skipped = items.filter((i) => i.status === 'skipped');
    expect(skipped.map((i) => i.tags[0]).sort()).toEqual([sig.tag, att.tag, sbomTag.tag, sbomSignature.tag, tagOf(image.digest), tagOf(sbomSignature.digest)].sort());
    expect(skipped[0]!.reason).toMatch(/copied with the artifact it refers to/);
    expect(report.rules[0]!.status).toBe('ok');
  });

  it('falls back to the tags when the source refuses the Referrers API request (not only 404)', async () => {
    const proxy = await startProxy(plainSource.url, { statusSequence: { match: /^GET \/v2\/.+\/referrers\//, statuses: Array(50).fill(403) } });
    try {
      const report = await sync(engine(proxy, plainDestination, { filters: { repositories: ['library/signed'], tags: ['1.0'] }, destinationNamespace: 'refused' }));
      expect(report.rules[0]!.items[0]).toMatchObject({ status: 'copied', referrers: 7 });
      expect(proxy.count(/^GET \/v2\/.+\/referrers\//)).toBe(1); // not asked again in the run
    } finally {
      await proxy.stop();
    }
  });

  it('leaves referrers alone with copyReferrers: false', async () => {
    const report = await sync(engine(plainSource, plainDestination, { filters: { repositories: ['library/signed'], tags: ['1.0'] }, destinationNamespace: 'bare', copyReferrers: false }));
    expect(report.rules[0]!.items[0]).toMatchObject({ status: 'copied', referrers: 0 });
    expect(await listTags(plainDestination, 'bare/library/signed')).toEqual(['1.0']);
  });

  it('fails the artifact (naming the referrer problem) when a referrer cannot be copied; the others continue', async () => {
    const broken = buildImage({ layers: [randomBlob(1000)] });
    const brokenSig = buildSignature(broken.descriptor);
    const fine = buildImage({ layers: [randomBlob(1000)] });
    await pushImage(plainSource, 'library/broken', 'v1', broken);
    await pushImage(plainSource, 'library/broken', brokenSig.tag, brokenSig);
    await pushImage(plainSource, 'library/broken', 'v2', fine);
    // The signature's payload blob disappears from the source.
    const del = await rawClient(plainSource).request('DELETE', `/v2/library/broken/blobs/${brokenSig.layers[0]!.digest}`, { scope: 'repository:library/broken:delete' });
    expect(del.status).toBe(202);
    const report = await sync(engine(plainSource, plainDestination, { filters: { repositories: ['library/broken'], tags: ['v*'] }, destinationNamespace: 'mirror' }));
    const items = report.rules[0]!.items;
    expect(items.find((i) => i.tags[0] === 'v2')).toMatchObject({ status: 'copied' });
    const failed = items.find((i) => i.tags[0] === 'v1')!;
    expect(failed.status).toBe('failed');
    expect(failed.reason).toMatch(/1 referrer\(s\) \(signatures, attestations, SBOMs\) could not be copied/);
    expect(report.rules[0]!.status).toBe('partial');
    // The image itself is in place; the next run retries its signature.
    expect((await getManifest(plainDestination, 'mirror/library/broken', 'v1'))?.digest).toBe(broken.digest);
  });
});

describe('index children', () => {
  const amd = buildImage({ layers: [randomBlob(1500)], platform: { os: 'linux', architecture: 'amd64' } });
  const arm = buildImage({ layers: [randomBlob(1500)], platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
  const index = buildIndex([amd, arm]);
  const indexSig = buildSignature(index.descriptor);
  const amdSig = buildSignature(amd.descriptor);
  const armSbom = sbomReferrer(arm.descriptor, 'arm');

  beforeAll(async () => {
    await pushImage(plainSource, 'library/multi', '2.0', index);
    await pushImage(plainSource, 'library/multi', indexSig.tag, indexSig);
    await pushImage(plainSource, 'library/multi', amdSig.tag, amdSig);
    await pushImage(plainSource, 'library/multi', undefined, armSbom);
    await pushIndexBytes(plainSource, 'library/multi', tagOf(arm.digest), fallbackIndex([armSbom]));
  });

  it("copies the index's referrers and each child's (cosign sign --recursive, per-platform SBOMs)", async () => {
    const report = await sync(engine(plainSource, plainDestination, { filters: { repositories: ['library/multi'], tags: ['2.0'] }, destinationNamespace: 'kids' }));
    expect(report.rules[0]!.items[0]).toMatchObject({ status: 'copied', referrers: 3 });
    expect((await getManifest(plainDestination, 'kids/library/multi', indexSig.tag))?.digest).toBe(indexSig.digest);
    expect((await getManifest(plainDestination, 'kids/library/multi', amdSig.tag))?.digest).toBe(amdSig.digest);
    expect(await fallbackDigests(plainDestination, 'kids/library/multi', arm.digest)).toEqual([armSbom.digest]);
  });

  it("with platform filtering, copies the kept children's referrers but not the index's (its digest changed)", async () => {
    const report = await sync(engine(plainSource, plainDestination, { filters: { repositories: ['library/multi'], tags: ['2.0'] }, destinationNamespace: 'amd', platforms: ['linux/amd64'] }));
    const item = report.rules[0]!.items[0]!;
    expect(item).toMatchObject({ status: 'copied', referrers: 1 });
    expect(item.destinationDigest).toBeDefined();
    expect(item.destinationDigest).not.toBe(index.digest);
    const tags = await listTags(plainDestination, 'amd/library/multi');
    expect(tags.sort()).toEqual(['2.0', amdSig.tag].sort());
  });
});

describe('the Referrers API', () => {
  const image = buildImage({ layers: [randomBlob(3000)] });
  const sbom = sbomReferrer(image.descriptor, 'api');
  const sbomSig = buildArtifact(MT.ociEmpty, [{ mediaType: MT.cosignSimpleSigning, bytes: Buffer.from('{"critical":{}}') }], {
    artifactType: 'application/vnd.dev.cosign.artifact.sig.v1+json',
    subject: sbom.descriptor,
  });

  beforeAll(async () => {
    // Pushed through the front: found only through its Referrers API (there is no fallback tag).
    await pushImage(apiSource, 'library/api', '1.0', image);
    await pushImage(apiSource, 'library/api', undefined, sbom);
    await pushImage(apiSource, 'library/api', undefined, sbomSig);
    expect(await listTags(apiSource, 'library/api')).toEqual(['1.0']);
  });

  it('discovers referrers through the source API and pushes them by digest to a destination that processes subject', async () => {
    const report = await sync(engine(apiSource, apiDestination, { destinationNamespace: 'm' }));
    expect(report.rules[0]!.items[0]).toMatchObject({ status: 'copied', referrers: 2 });
    expect(apiSource.count(new RegExp(`^GET /v2/library/api/referrers/${image.digest}$`))).toBeGreaterThan(0);
    expect(apiSource.count(new RegExp(`^GET /v2/library/api/referrers/${sbom.digest}$`))).toBeGreaterThan(0);
    // The destination answered OCI-Subject: no fallback tag, the registry lists them itself.
    expect(await listTags(apiDestinationBackend, 'm/library/api')).toEqual(['1.0']);
    expect(apiDestination.referrers.get(`m/library/api@${image.digest}`)?.map((d) => d.digest)).toEqual([sbom.digest]);
    expect(apiDestination.referrers.get(`m/library/api@${sbom.digest}`)?.map((d) => d.digest)).toEqual([sbomSig.digest]);
    expect((await getManifest(apiDestinationBackend, 'm/library/api', sbomSig.digest))?.bytes.equals(sbomSig.manifest)).toBe(true);
  });

  it('checks a present artifact through the destination API on a rerun (nothing pushed)', async () => {
    const report = await sync(engine(apiSource, apiDestination, { destinationNamespace: 'm' }));
    expect(report.rules[0]!.items[0]).toMatchObject({ status: 'present', referrers: 0 });
    expect(apiDestination.count(/^PUT \/v2\/.+\/manifests\//)).toBe(3); // the image and the two referrers, from the first run only
  });

  it('writes the fallback tag when the destination has no Referrers API (distribution 2.8)', async () => {
    const report = await sync(engine(apiSource, plainDestination, { destinationNamespace: 'from-api' }));
    expect(report.rules[0]!.items[0]).toMatchObject({ status: 'copied', referrers: 2 });
    expect(await fallbackDigests(plainDestination, 'from-api/library/api', image.digest)).toEqual([sbom.digest]);
    expect(await fallbackDigests(plainDestination, 'from-api/library/api', sbom.digest)).toEqual([sbomSig.digest]);
  });
});

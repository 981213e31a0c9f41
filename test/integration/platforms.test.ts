// Rule `platforms`: only matching children of an index are copied, under a new index (same media type
// and annotations, new digest, reported); the default keeps indexes byte for byte. Matching rules
// first (no registry), then real registries.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { Engine } from '../../src/engine/engine.js';
import { formatTextReport } from '../../src/engine/report.js';
import { parseManifest } from '../../src/registry/media-types.js';
import { filterIndex, parsePlatformPattern, platformMatches } from '../../src/transfer/platforms.js';
import {
  MT,
  type TestImage,
  type TestRegistry,
  buildArtifact,
  buildImage,
  buildIndex,
  getManifest,
  headManifest,
  pushImage,
  randomBlob,
  sha256,
  startRegistry,
} from '../helpers/index.js';

describe('platform matching', () => {
  const match = (pattern: string, platform: { os: string; architecture: string; variant?: string }) => platformMatches(platform, [parsePlatformPattern(pattern)]);

  it.each([
    ['linux/amd64', { os: 'linux', architecture: 'amd64' }, true],
    ['linux/amd64', { os: 'linux', architecture: 'amd64', variant: 'v3' }, false],
    ['linux/amd64/v3', { os: 'linux', architecture: 'amd64', variant: 'v3' }, true],
    ['linux/amd64', { os: 'linux', architecture: 'x86_64' }, true],
    ['linux/arm64', { os: 'linux', architecture: 'arm64', variant: 'v8' }, true],
    ['linux/arm64', { os: 'linux', architecture: 'arm64' }, true],
    ['linux/arm64/v8', { os: 'linux', architecture: 'arm64' }, true],
    ['linux/arm64/v8', { os: 'linux', architecture: 'aarch64' }, true],
    ['linux/arm64', { os: 'linux', architecture: 'arm64', variant: 'v9' }, false],
    ['linux/arm', { os: 'linux', architecture: 'arm', variant: 'v7' }, true],
    ['linux/arm', { os: 'linux', architecture: 'arm', variant: 'v6' }, false],
    ['linux/arm/v6', { os: 'linux', architecture: 'arm', variant: 'v6' }, true],
    ['linux/amd64', { os: 'windows', architecture: 'amd64' }, false],
    ['Linux/AMD64', { os: 'linux', architecture: 'amd64' }, true],
    ['linux/s390x', { os: 'linux', architecture: 's390x' }, true],
  ])('%s vs %j → %s', (pattern, platform, expected) => {
    expect(match(pattern, platform)).toBe(expected);
  });

  it('refuses malformed patterns in the config (exit 2, not at copy time)', () => {
    const cfg = (platforms: string[]) => parseConfig({ registries: { a: { url: 'http://a' }, b: { url: 'http://b' } }, rules: [{ name: 'r', source: 'a', destination: 'b', platforms }] });
    expect(() => cfg(['linux'])).toThrow(/os\/architecture\[\/variant\]/);
    expect(() => cfg(['linux/amd64/v3/x'])).toThrow(/os\/architecture/);
    expect(cfg(['linux/amd64', 'linux/arm64/v8']).rules[0]!.platforms).toEqual(['linux/amd64', 'linux/arm64/v8']);
  });

  it('keeps platform-less children, and buildx attestation manifests of kept children', () => {
    const d = (digest: string, extra: Record<string, unknown>) => ({ mediaType: MT.ociManifest, digest: `sha256:${digest.repeat(64)}`, size: 1, ...extra });
    const manifests = [
      d('a', { platform: { os: 'linux', architecture: 'amd64' } }),
      d('b', { platform: { os: 'linux', architecture: 'arm', variant: 'v7' } }),
      d('c', { platform: { os: 'unknown', architecture: 'unknown' }, annotations: { 'vnd.docker.reference.type': 'attestation-manifest', 'vnd.docker.reference.digest': `sha256:${'a'.repeat(64)}` } }),
      d('d', { platform: { os: 'unknown', architecture: 'unknown' }, annotations: { 'vnd.docker.reference.type': 'attestation-manifest', 'vnd.docker.reference.digest': `sha256:${'b'.repeat(64)}` } }),
      d('e', {}),
    ];
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.ociIndex, manifests, annotations: { x: 'y' } }));
    const r = filterIndex(bytes, parseManifest(bytes), [parsePlatformPattern('linux/amd64')]);
    expect(r.action).toBe('rewrite');
    if (r.action !== 'rewrite') return;
    const doc = JSON.parse(r.bytes.toString('utf8')) as { manifests: { digest: string }[]; annotations: unknown };
    expect(doc.manifests.map((m) => m.digest[7])).toEqual(['a', 'c', 'e']);
    expect(doc.annotations).toEqual({ x: 'y' });
    expect(filterIndex(bytes, parseManifest(bytes), [parsePlatformPattern('linux/ppc64le')])).toMatchObject({ action: 'skip' });
    expect(filterIndex(bytes, parseManifest(bytes), [])).toEqual({ action: 'keep' });
  });
});

let source: TestRegistry;
let destination: TestRegistry;

const amd = buildImage({ layers: [randomBlob(3000)], platform: { os: 'linux', architecture: 'amd64' } });
const arm64 = buildImage({ layers: [randomBlob(3000)], platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
const armv7 = buildImage({ layers: [randomBlob(3000)], platform: { os: 'linux', architecture: 'arm', variant: 'v7' } });
const s390x = buildImage({ layers: [randomBlob(3000)], platform: { os: 'linux', architecture: 's390x' } });
// A buildx-style provenance attestation of the amd64 image: kept with it.
const provenance = buildArtifact(MT.ociConfig, [{ mediaType: 'application/vnd.in-toto+json', bytes: Buffer.from('{"predicateType":"https://slsa.dev/provenance/v0.2"}') }]);
const multi = (() => {
  const idx = buildIndex([amd, arm64, armv7, s390x], 'oci', { annotations: { 'org.opencontainers.image.source': 'https://example.com/app' } });
  const doc = JSON.parse(idx.manifest.toString('utf8')) as { manifests: Record<string, unknown>[] };
  doc.manifests.push({
    mediaType: MT.ociManifest,
    digest: provenance.digest,
    size: provenance.manifest.length,
    platform: { os: 'unknown', architecture: 'unknown' },
    annotations: { 'vnd.docker.reference.digest': amd.digest, 'vnd.docker.reference.type': 'attestation-manifest' },
  });
  const manifest = Buffer.from(JSON.stringify(doc, null, 2));
  const children = [...idx.children, provenance];
  return { ...idx, manifest, digest: sha256(manifest), children, blobs: new Map([...idx.blobs, ...provenance.blobs]) };
})();
const dockerList = buildIndex([buildImage({ format: 'docker', layers: [randomBlob(1000)] }), buildImage({ format: 'docker', layers: [randomBlob(1000)], platform: { os: 'linux', architecture: 'arm', variant: 'v7' } })], 'docker');
const armOnly = buildIndex([buildImage({ layers: [randomBlob(500)], platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } })]);
const single = buildImage({ layers: [randomBlob(500)], platform: { os: 'linux', architecture: 'ppc64le' } });

function engine(rule: Record<string, unknown>): Engine {
  return new Engine(
    parseConfig({
      registries: { src: { url: source.url }, dst: { url: destination.url } },
      rules: [{ name: 'p', source: 'src', destination: 'dst', ...rule }],
    }),
    { stateDir: false },
  );
}

async function sync(rule: Record<string, unknown>) {
  const e = engine(rule);
  try {
    return await e.sync();
  } finally {
    await e.close();
  }
}

beforeAll(async () => {
  [source, destination] = await Promise.all([startRegistry(), startRegistry()]);
  await pushImage(source, 'app/multi', '1.0', multi);
  await pushImage(source, 'app/dlist', '1.0', dockerList);
  await pushImage(source, 'app/armonly', '1.0', armOnly);
  await pushImage(source, 'app/single', '1.0', single as TestImage);
}, 60_000);

afterAll(async () => {
  await Promise.all([source?.stop(), destination?.stop()]);
});

describe('platform filtering against real registries', () => {
  it('pushes a new index with only the chosen children (same media type and annotations) and reports the new digest', async () => {
    const report = await sync({ filters: { repositories: ['app/multi'] }, destinationNamespace: 'f', platforms: ['linux/amd64', 'linux/arm64'] });
    const item = report.rules[0]!.items[0]!;
    expect(item.status).toBe('copied');
    expect(item.digest).toBe(multi.digest);
    const pushed = (await getManifest(destination, 'f/app/multi', '1.0'))!;
    expect(item.destinationDigest).toBe(pushed.digest);
    expect(pushed.digest).not.toBe(multi.digest);
    expect(pushed.mediaType).toBe(MT.ociIndex);
    const doc = JSON.parse(pushed.bytes.toString('utf8')) as { mediaType: string; manifests: { digest: string }[]; annotations: unknown };
    expect(doc.mediaType).toBe(MT.ociIndex);
    expect(doc.annotations).toEqual({ 'org.opencontainers.image.source': 'https://example.com/app' });
    expect(doc.manifests.map((m) => m.digest)).toEqual([amd.digest, arm64.digest, provenance.digest]);
    // The kept children are unchanged (same digests); the others were never copied.
    expect((await getManifest(destination, 'f/app/multi', amd.digest))?.bytes.equals(amd.manifest)).toBe(true);
    expect(await headManifest(destination, 'f/app/multi', armv7.digest)).toBeNull();
    expect(await headManifest(destination, 'f/app/multi', s390x.digest)).toBeNull();
    expect(formatTextReport(report)).toContain(`destination digest ${pushed.digest} differs from source ${multi.digest}`);

    // Deterministic: a rerun finds the same filtered index in place.
    const again = await sync({ filters: { repositories: ['app/multi'] }, destinationNamespace: 'f', platforms: ['linux/amd64', 'linux/arm64'] });
    expect(again.rules[0]!.items[0]).toMatchObject({ status: 'present', destinationDigest: pushed.digest });
  });

  it('copies the index byte for byte by default', async () => {
    const report = await sync({ filters: { repositories: ['app/multi'] }, destinationNamespace: 'all' });
    expect(report.rules[0]!.items[0]!.destinationDigest).toBeUndefined();
    expect((await getManifest(destination, 'all/app/multi', '1.0'))?.bytes.equals(multi.manifest)).toBe(true);
    expect(await headManifest(destination, 'all/app/multi', s390x.digest)).not.toBeNull();
  });

  it('keeps a Docker manifest list a manifest list', async () => {
    const report = await sync({ filters: { repositories: ['app/dlist'] }, destinationNamespace: 'f', platforms: ['linux/arm/v7'] });
    expect(report.rules[0]!.items[0]!.status).toBe('copied');
    const pushed = (await getManifest(destination, 'f/app/dlist', '1.0'))!;
    expect(pushed.mediaType).toBe(MT.dockerList);
    expect((JSON.parse(pushed.bytes.toString('utf8')) as { mediaType: string; manifests: unknown[] }).manifests).toHaveLength(1);
  });

  it('skips an index with none of the platforms, and copies single-platform images whatever their platform', async () => {
    const report = await sync({ filters: { repositories: ['app/armonly', 'app/single'] }, destinationNamespace: 'f', platforms: ['linux/amd64'] });
    const items = report.rules[0]!.items;
    expect(items.find((i) => i.sourceRepository === 'app/armonly')).toMatchObject({ status: 'skipped', reason: 'no platform of the index (linux/arm64/v8) matches platforms [linux/amd64]' });
    expect(items.find((i) => i.sourceRepository === 'app/single')).toMatchObject({ status: 'copied' });
    expect(items.find((i) => i.sourceRepository === 'app/single')!.destinationDigest).toBeUndefined();
    expect(report.rules[0]!.status).toBe('ok');
    expect(await headManifest(destination, 'f/app/armonly', '1.0')).toBeNull();
  });
});

// Test content (images, indexes, artifacts, Helm charts, signatures, Docker schema 1) built in memory:
// manifests and blobs with their digests, nothing pushed. raw-client.ts pushes it and reads results back.
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { gzipSync } from 'node:zlib';

// ---------------------------------------------------------------------------------------------
// Media types (spelled out here rather than imported from src/: tests must not share Ferry's code to
// check Ferry's results, see raw-client.ts)

export const MT = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociEmpty: 'application/vnd.oci.empty.v1+json',
  helmConfig: 'application/vnd.cncf.helm.config.v1+json',
  helmChart: 'application/vnd.cncf.helm.chart.content.v1.tar+gzip',
  helmProvenance: 'application/vnd.cncf.helm.chart.provenance.v1.prov',
  cosignSimpleSigning: 'application/vnd.dev.cosign.simplesigning.v1+json',
} as const;

/** Everything a manifest GET should accept (the four modern types plus both schema 1 spellings). */
export const ACCEPT_ALL_MANIFESTS = [MT.ociIndex, MT.dockerList, MT.ociManifest, MT.dockerManifest, MT.dockerSchema1Signed, MT.dockerSchema1].join(', ');

// ---------------------------------------------------------------------------------------------
// Types

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  'os.version'?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
  artifactType?: string;
  urls?: string[];
}

export interface TestBlob {
  bytes: Buffer;
  digest: string;
  descriptor: Descriptor;
}

interface ContentBase {
  /** The exact manifest bytes pushed. */
  manifest: Buffer;
  /** Content-Type to PUT it with. */
  mediaType: string;
  /** The digest the registry reports (for schema 1: of the unsigned payload, not of `manifest`). */
  digest: string;
  /** A descriptor pointing at this manifest (for indexes, subjects, referrers). */
  descriptor: Descriptor;
  /** Every blob this content needs, children's included, by digest. */
  blobs: Map<string, Buffer>;
}

export interface TestImage extends ContentBase {
  kind: 'image';
  config: TestBlob;
  layers: TestBlob[];
  platform?: Platform;
}

export interface TestIndex extends ContentBase {
  kind: 'index';
  children: TestContent[];
}

export interface TestSchema1 extends ContentBase {
  kind: 'schema1';
  layers: TestBlob[];
  /** The payload the signature covers; digest = sha256(payload). */
  payload: Buffer;
}

export type TestContent = TestImage | TestIndex | TestSchema1;

// ---------------------------------------------------------------------------------------------
// Builders

export function sha256(bytes: Buffer | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Random, incompressible bytes (so sizes on the wire equal sizes on disk). */
export function randomBlob(size: number): Buffer {
  return randomBytes(size);
}

export function blob(bytes: Buffer, mediaType: string, extra: Partial<Descriptor> = {}): TestBlob {
  const digest = sha256(bytes);
  return { bytes, digest, descriptor: { mediaType, digest, size: bytes.length, ...extra } };
}

export interface BuildImageOptions {
  /** Layer contents, or sizes of random layers. Default: two random layers of 1 KiB and 2 KiB. */
  layers?: Array<Buffer | number>;
  /** Default 'oci'. */
  format?: 'docker' | 'oci';
  /** Default linux/amd64; written into the config and used by buildIndex. */
  platform?: Platform;
  /** Override the config media type (e.g. an artifact's). */
  configMediaType?: string;
  /** Override the config bytes (default: an image config JSON listing the layers). */
  configBytes?: Buffer;
  /** Override every layer's media type. */
  layerMediaType?: string;
  /** OCI only. */
  artifactType?: string;
  /** OCI only (manifest annotations). */
  annotations?: Record<string, string>;
  /** OCI only: makes this a referrer of `subject`. */
  subject?: Descriptor;
  /** Write the `mediaType` field into the manifest JSON (default true; Helm omits it). */
  mediaTypeField?: boolean;
}

/** Builds an image (or any manifest with a config and layers) in memory. */
export function buildImage(opts: BuildImageOptions = {}): TestImage {
  const format = opts.format ?? 'oci';
  if (format === 'docker' && (opts.subject || opts.artifactType || opts.annotations)) {
    throw new Error('buildImage: subject, artifactType and annotations exist only in OCI manifests');
  }
  const platform = opts.platform ?? { os: 'linux', architecture: 'amd64' };
  const layerType = opts.layerMediaType ?? (format === 'docker' ? MT.dockerLayer : MT.ociLayer);
  const layers = (opts.layers ?? [1024, 2048]).map((l) => blob(typeof l === 'number' ? randomBlob(l) : l, layerType));
  const configBytes =
    opts.configBytes ??
    Buffer.from(
      JSON.stringify({
        architecture: platform.architecture,
        os: platform.os,
        ...(platform.variant ? { variant: platform.variant } : {}),
        ...(platform['os.version'] ? { 'os.version': platform['os.version'] } : {}),
        config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] },
        // diff_ids should be digests of the *uncompressed* layers; our layers are random bytes that
        // no one decompresses, so their own digests serve (registries never check this).
        rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
        history: layers.map(() => ({ created: '2024-01-01T00:00:00Z', created_by: 'ferry test layer' })),
      }),
    );
  const config = blob(configBytes, opts.configMediaType ?? (format === 'docker' ? MT.dockerConfig : MT.ociConfig));
  const mediaType = format === 'docker' ? MT.dockerManifest : MT.ociManifest;
  const doc: Record<string, unknown> = { schemaVersion: 2 };
  if (opts.mediaTypeField ?? true) doc.mediaType = mediaType;
  if (opts.artifactType) doc.artifactType = opts.artifactType;
  doc.config = config.descriptor;
  doc.layers = layers.map((l) => l.descriptor);
  if (opts.subject) doc.subject = opts.subject;
  if (opts.annotations) doc.annotations = opts.annotations;
  const manifest = Buffer.from(JSON.stringify(doc));
  const digest = sha256(manifest);
  const blobs = new Map<string, Buffer>([[config.digest, config.bytes]]);
  for (const l of layers) blobs.set(l.digest, l.bytes);
  const descriptor: Descriptor = { mediaType, digest, size: manifest.length };
  if (opts.artifactType) descriptor.artifactType = opts.artifactType;
  return { kind: 'image', manifest, mediaType, digest, descriptor, config, layers, blobs, platform };
}

export interface BuildIndexOptions {
  annotations?: Record<string, string>;
  artifactType?: string;
  subject?: Descriptor;
}

/**
 * An OCI index or a Docker manifest list over `children` (each with its platform). Children must
 * be pushed first (pushImage does that).
 */
export function buildIndex(children: TestContent[], format: 'docker' | 'oci' = 'oci', opts: BuildIndexOptions = {}): TestIndex {
  if (format === 'docker' && (opts.subject || opts.artifactType || opts.annotations)) {
    throw new Error('buildIndex: subject, artifactType and annotations exist only in OCI indexes');
  }
  const mediaType = format === 'docker' ? MT.dockerList : MT.ociIndex;
  const manifests = children.map((c) => {
    const d: Descriptor = { mediaType: c.mediaType, digest: c.digest, size: c.manifest.length };
    if (c.kind === 'image') d.platform = c.platform ?? { os: 'linux', architecture: 'amd64' };
    else if (format === 'docker') d.platform = { os: 'linux', architecture: 'amd64' }; // required in manifest lists
    if (c.descriptor.artifactType) d.artifactType = c.descriptor.artifactType;
    return d;
  });
  const doc: Record<string, unknown> = { schemaVersion: 2, mediaType };
  if (opts.artifactType) doc.artifactType = opts.artifactType;
  doc.manifests = manifests;
  if (opts.subject) doc.subject = opts.subject;
  if (opts.annotations) doc.annotations = opts.annotations;
  const manifest = Buffer.from(JSON.stringify(doc));
  const digest = sha256(manifest);
  const blobs = new Map<string, Buffer>();
  for (const c of children) for (const [d, b] of c.blobs) blobs.set(d, b);
  return { kind: 'index', manifest, mediaType, digest, descriptor: { mediaType, digest, size: manifest.length }, children, blobs };
}

/** A two-platform (linux/amd64 + linux/arm64/v8) index of fresh images: the common multi-arch case. */
export function buildMultiArch(format: 'docker' | 'oci' = 'oci', layers: Array<Buffer | number> = [512, 1024]): TestIndex {
  return buildIndex(
    [
      buildImage({ format, layers, platform: { os: 'linux', architecture: 'amd64' } }),
      buildImage({ format, layers, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } }),
    ],
    format,
  );
}

export interface ArtifactLayer {
  mediaType: string;
  bytes: Buffer;
  annotations?: Record<string, string>;
}

/**
 * A non-image OCI artifact: any config media type (the empty descriptor `{}` for
 * application/vnd.oci.empty.v1+json unless configBytes is given) and typed layers (a bare Buffer
 * is an application/octet-stream layer).
 */
export function buildArtifact(
  configMediaType: string,
  layers: Array<ArtifactLayer | Buffer>,
  opts: { configBytes?: Buffer; artifactType?: string; annotations?: Record<string, string>; subject?: Descriptor; mediaTypeField?: boolean } = {},
): TestImage {
  const configBytes = opts.configBytes ?? Buffer.from(configMediaType === MT.ociEmpty ? '{}' : JSON.stringify({ created: '2024-01-01T00:00:00Z' }));
  const img = buildImage({
    format: 'oci',
    layers: [],
    configMediaType,
    configBytes,
    artifactType: opts.artifactType,
    annotations: opts.annotations,
    subject: opts.subject,
    mediaTypeField: opts.mediaTypeField,
  });
  // Rebuild with typed layers (buildImage gives every layer the same media type).
  const typed = layers.map((l) => (Buffer.isBuffer(l) ? blob(l, 'application/octet-stream') : blob(l.bytes, l.mediaType, l.annotations ? { annotations: l.annotations } : {})));
  const doc = JSON.parse(img.manifest.toString('utf8')) as Record<string, unknown>;
  doc.layers = typed.map((l) => l.descriptor);
  // Keep key order stable: subject and annotations after layers, as in buildImage.
  const { subject, annotations, ...rest } = doc;
  const ordered: Record<string, unknown> = { ...rest };
  if (subject !== undefined) ordered.subject = subject;
  if (annotations !== undefined) ordered.annotations = annotations;
  const manifest = Buffer.from(JSON.stringify(ordered));
  const digest = sha256(manifest);
  const blobs = new Map<string, Buffer>([[img.config.digest, img.config.bytes]]);
  for (const l of typed) blobs.set(l.digest, l.bytes);
  const descriptor: Descriptor = { mediaType: MT.ociManifest, digest, size: manifest.length };
  if (opts.artifactType) descriptor.artifactType = opts.artifactType;
  return { kind: 'image', manifest, mediaType: MT.ociManifest, digest, descriptor, config: img.config, layers: typed, blobs };
}

/**
 * A Helm chart as `helm push` stores it: Chart.yaml as the JSON config, a real .tgz holding
 * <name>/Chart.yaml, OCI manifest without a `mediaType` field, title/version annotations.
 * Push it under tag `version` with '+' replaced by '_'.
 */
export function buildHelmChart(chart: { name: string; version: string; appVersion?: string; description?: string }): TestImage & { tag: string } {
  const meta = { name: chart.name, version: chart.version, description: chart.description ?? 'a Ferry test chart', apiVersion: 'v2', appVersion: chart.appVersion ?? '1.0.0', type: 'application' };
  const chartYaml = `apiVersion: v2\nname: ${meta.name}\nversion: ${meta.version}\ndescription: ${meta.description}\nappVersion: "${meta.appVersion}"\ntype: application\n`;
  const tgz = gzipSync(tar([{ name: `${chart.name}/Chart.yaml`, data: Buffer.from(chartYaml) }]));
  const img = buildArtifact(MT.helmConfig, [{ mediaType: MT.helmChart, bytes: tgz }], {
    configBytes: Buffer.from(JSON.stringify(meta)),
    annotations: { 'org.opencontainers.image.title': chart.name, 'org.opencontainers.image.version': chart.version, 'org.opencontainers.image.description': meta.description },
    mediaTypeField: false,
  });
  return { ...img, tag: chart.version.replace(/\+/g, '_') };
}

/**
 * A cosign-style signature of `subject`: pushed under the tag `sha256-<hex>.sig` (cosign's tag
 * scheme) or, with `referrer: true`, as an OCI 1.1 referrer (subject field, artifactType).
 */
export function buildSignature(subject: Descriptor, opts: { referrer?: boolean; dockerReference?: string } = {}): TestImage & { tag: string } {
  const payload = Buffer.from(
    JSON.stringify({
      critical: { identity: { 'docker-reference': opts.dockerReference ?? 'example.com/ferry/test' }, image: { 'docker-manifest-digest': subject.digest }, type: 'cosign container image signature' },
      optional: null,
    }),
  );
  const layer: ArtifactLayer = { mediaType: MT.cosignSimpleSigning, bytes: payload, annotations: { 'dev.cosignproject.cosign/signature': randomBytes(64).toString('base64') } };
  const img = opts.referrer
    ? buildArtifact(MT.ociEmpty, [layer], { artifactType: 'application/vnd.dev.cosign.artifact.sig.v1+json', subject })
    : buildArtifact(MT.ociConfig, [layer], {
        configBytes: Buffer.from(JSON.stringify({ architecture: '', config: {}, created: '0001-01-01T00:00:00Z', os: '', rootfs: { type: 'layers', diff_ids: [sha256(payload)] } })),
      });
  return { ...img, tag: `${subject.digest.replace(':', '-')}.sig` };
}

// --- Docker schema 1 -------------------------------------------------------------------------

let schema1Key: KeyObject | undefined;

/**
 * A signed Docker schema 1 manifest (application/vnd.docker.distribution.manifest.v1+prettyjws),
 * as docker 1.x pushed them. The registry verifies the JWS (libtrust "pretty signature": the
 * signature covers the manifest without its `signatures` key) and reports the digest of that
 * unsigned payload, which is why `digest` != sha256(manifest) here.
 * Needs startRegistry({ schema1: true }): distribution 2.8 refuses schema 1 pushes by default.
 */
export function buildSchema1(name: string, tag: string, opts: { layers?: Array<Buffer | number>; architecture?: string } = {}): TestSchema1 {
  const layers = (opts.layers ?? [1024]).map((l) => blob(typeof l === 'number' ? randomBlob(l) : l, MT.dockerLayer));
  // fsLayers and history are both newest first (history[i] describes fsLayers[i]); each
  // v1Compatibility is a JSON *string* with an id/parent chain, the newest one carrying the config.
  const newestFirst = [...layers].reverse();
  const ids = newestFirst.map(() => randomBytes(32).toString('hex'));
  const history = newestFirst.map((_, i) => {
    const v1: Record<string, unknown> = { id: ids[i], created: '2024-01-01T00:00:00Z', container_config: { Cmd: ['/bin/sh'] } };
    if (i + 1 < ids.length) v1.parent = ids[i + 1];
    if (i === 0) Object.assign(v1, { architecture: opts.architecture ?? 'amd64', os: 'linux', config: { Cmd: ['/bin/sh'] } });
    return { v1Compatibility: JSON.stringify(v1) };
  });
  const unsigned = { schemaVersion: 1, name, tag, architecture: opts.architecture ?? 'amd64', fsLayers: newestFirst.map((l) => ({ blobSum: l.digest })), history };
  const payload = Buffer.from(JSON.stringify(unsigned, null, 3));

  // libtrust JSONSignature: formatLength = bytes up to the last non-space before the final '}',
  // formatTail = the rest; protected = b64url({formatLength, formatTail, time}); signed bytes =
  // protected + '.' + b64url(payload).
  const text = payload.toString('utf8');
  const close = text.lastIndexOf('}');
  let formatLength = close;
  while (formatLength > 0 && /\s/.test(text[formatLength - 1] ?? '')) formatLength--;
  const formatTail = payload.subarray(formatLength);
  const protectedHeader = Buffer.from(JSON.stringify({ formatLength, formatTail: formatTail.toString('base64url'), time: new Date().toISOString().replace(/\.\d+Z$/, 'Z') })).toString('base64url');
  schema1Key ??= generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const signature = sign('sha256', Buffer.from(`${protectedHeader}.${payload.toString('base64url')}`), { key: schema1Key, dsaEncoding: 'ieee-p1363' });
  const jwk = schema1Key.export({ format: 'jwk' });
  const signatures = [{ header: { jwk: { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }, alg: 'ES256' }, signature: signature.toString('base64url'), protected: protectedHeader }];
  const indent = '   ';
  const sigJson = JSON.stringify(signatures, null, indent).replace(/\n/g, `\n${indent}`);
  const manifest = Buffer.concat([payload.subarray(0, formatLength), Buffer.from(`,\n${indent}"signatures": ${sigJson}\n}`)]);
  const digest = sha256(payload);
  const blobs = new Map(layers.map((l) => [l.digest, l.bytes] as const));
  return { kind: 'schema1', manifest, mediaType: MT.dockerSchema1Signed, digest, descriptor: { mediaType: MT.dockerSchema1Signed, digest, size: manifest.length }, layers, blobs, payload };
}

/** A minimal ustar archive (enough for `helm` and `tar` to read a chart). */
function tar(files: { name: string; data: Buffer }[]): Buffer {
  const parts: Buffer[] = [];
  for (const f of files) {
    const h = Buffer.alloc(512);
    h.write(f.name, 0, 100, 'utf8');
    h.write('0000644\0', 100, 'ascii');
    h.write('0000000\0', 108, 'ascii');
    h.write('0000000\0', 116, 'ascii');
    h.write(f.data.length.toString(8).padStart(11, '0') + '\0', 124, 'ascii');
    h.write('14500000000\0', 136, 'ascii'); // mtime 2015, fixed for reproducible digests
    h.write('        ', 148, 'ascii'); // checksum placeholder
    h.write('0', 156, 'ascii');
    h.write('ustar\0', 257, 'ascii');
    h.write('00', 263, 'ascii');
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'ascii');
    parts.push(h, f.data, Buffer.alloc((512 - (f.data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

// Test content (images, indexes, artifacts, Helm charts, signatures, Docker schema 1) built in memory,
// and a deliberately small, independent registry client to push it and to read results back.
//
// The client here must NOT reuse Ferry's registry client: a test that seeds a registry with Ferry's
// code and then checks it with Ferry's code would pass even if both sides shared a bug. It speaks
// just enough of the Distribution API (monolithic uploads, manifests, tags, catalog) and of the auth
// challenges (Basic; Bearer via the realm) to set up and assert, nothing more.
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { Agent, request, type Dispatcher } from 'undici';
import { HELPERS_USER_AGENT } from './token-issuer.js';

// ---------------------------------------------------------------------------------------------
// Media types (spelled out here rather than imported from src/, for the same independence reason)

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

// ---------------------------------------------------------------------------------------------
// The raw client

/** Where to talk to, and as whom. A TestRegistry fits (its first user's credentials). */
export interface RegistryEndpoint {
  url: string;
  username?: string;
  password?: string;
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** The URL that answered (after redirects, when followed). */
  url: string;
}

export interface RawRequestOptions {
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** The token scope this request needs (asked for together with the challenge's scope). */
  scope?: string;
  /** Follow 3xx redirects (dropping Authorization when the host changes). Default false. */
  followRedirects?: boolean;
}

// One connection pool for the helpers, separate from whatever dispatcher Ferry's code installs
// globally; short keep-alive so stopped registries do not leave half-dead sockets around.
const dispatcher: Dispatcher = new Agent({ keepAliveTimeout: 1000, keepAliveMaxTimeout: 2000, connect: { timeout: 5000 } });

/**
 * A tiny Distribution client: remembers the auth scheme, caches Bearer tokens per scope, and retries
 * a request once after a 401 challenge.
 */
export class RawRegistryClient {
  private readonly base: URL;
  private scheme: 'basic' | 'bearer' | undefined;
  private readonly tokens = new Map<string, string>();
  private readonly pending = new Map<string, Promise<string>>();
  /** How many token requests this client made (helpful when debugging token traffic). */
  tokenRequests = 0;

  constructor(readonly endpoint: RegistryEndpoint) {
    this.base = new URL(endpoint.url);
  }

  async request(method: string, pathOrUrl: string, opts: RawRequestOptions = {}): Promise<RawResponse> {
    let url = new URL(pathOrUrl, this.base);
    let res = await this.send(method, url, opts, this.authFor(opts.scope));
    if (res.status === 401) {
      const auth = await this.answerChallenge(res.headers['www-authenticate'], opts.scope);
      if (auth !== undefined) res = await this.send(method, url, opts, auth);
    }
    for (let hops = 0; opts.followRedirects && hops < 5 && [301, 302, 303, 307, 308].includes(res.status); hops++) {
      const location = header(res, 'location');
      if (location === undefined) break;
      const next = new URL(location, url);
      // Never forward credentials to another host (object storage rejects or, worse, logs them).
      const sameOrigin = next.origin === this.base.origin;
      url = next;
      res = await this.send(method === 'HEAD' ? 'HEAD' : 'GET', url, { ...opts, body: undefined }, sameOrigin ? this.authFor(opts.scope) : undefined);
    }
    return res;
  }

  private authFor(scope: string | undefined): string | undefined {
    if (this.scheme === 'basic') return basicHeader(this.endpoint);
    if (this.scheme === 'bearer') {
      const token = this.tokens.get(scope ?? '') ?? this.tokens.get('');
      return token === undefined ? undefined : `Bearer ${token}`;
    }
    return undefined;
  }

  private async answerChallenge(challenge: string | string[] | undefined, scopeHint: string | undefined): Promise<string | undefined> {
    const value = Array.isArray(challenge) ? challenge.join(', ') : challenge;
    if (value === undefined) return undefined;
    const parsed = parseChallenge(value);
    if (parsed.scheme === 'basic') {
      if (this.endpoint.username === undefined) return undefined;
      this.scheme = 'basic';
      return basicHeader(this.endpoint);
    }
    if (parsed.scheme !== 'bearer' || parsed.params.realm === undefined) return undefined;
    const scopes = new Set<string>();
    if (scopeHint) scopes.add(scopeHint);
    for (const s of (parsed.params.scope ?? '').split(' ')) if (s) scopes.add(s);
    const realm = new URL(parsed.params.realm);
    if (parsed.params.service) realm.searchParams.set('service', parsed.params.service);
    for (const s of scopes) realm.searchParams.append('scope', s);
    // Parallel requests (pushImage uploads blobs concurrently) share one token request.
    const key = realm.toString();
    let pending = this.pending.get(key);
    if (pending === undefined) {
      pending = this.fetchToken(realm).finally(() => this.pending.delete(key));
      this.pending.set(key, pending);
    }
    const token = await pending;
    this.scheme = 'bearer';
    this.tokens.set(scopeHint ?? '', token);
    return `Bearer ${token}`;
  }

  private async fetchToken(realm: URL): Promise<string> {
    const headers: Record<string, string> = { 'user-agent': HELPERS_USER_AGENT };
    const basic = basicHeader(this.endpoint);
    if (basic) headers.authorization = basic;
    this.tokenRequests++;
    const res = await request(realm, { method: 'GET', headers, dispatcher });
    const body = Buffer.from(await res.body.arrayBuffer());
    if (res.statusCode !== 200) throw new Error(`token request to ${realm.origin}${realm.pathname} failed: HTTP ${res.statusCode} ${body.toString('utf8').slice(0, 300)}`);
    const json = JSON.parse(body.toString('utf8')) as { token?: string; access_token?: string };
    const token = json.token ?? json.access_token;
    if (!token) throw new Error('token response carried neither token nor access_token');
    return token;
  }

  private async send(method: string, url: URL, opts: RawRequestOptions, authorization: string | undefined): Promise<RawResponse> {
    const headers: Record<string, string> = { 'user-agent': HELPERS_USER_AGENT, ...opts.headers };
    if (authorization) headers.authorization = authorization;
    const res = await request(url, { method: method as Dispatcher.HttpMethod, headers, body: opts.body, dispatcher });
    const body = method === 'HEAD' ? (await res.body.dump(), Buffer.alloc(0)) : Buffer.from(await res.body.arrayBuffer());
    return { status: res.statusCode, headers: res.headers, body, url: url.toString() };
  }
}

// Clients are cached per endpoint + credentials so token requests made by the helpers stay few
// (tests asserting a token issuer's traffic can also filter them out via HELPERS_USER_AGENT).
const clients = new Map<string, RawRegistryClient>();

/** The cached raw client for an endpoint. */
export function rawClient(reg: RegistryEndpoint): RawRegistryClient {
  const key = `${reg.url}\0${reg.username ?? ''}\0${reg.password ?? ''}`;
  let c = clients.get(key);
  if (!c) {
    c = new RawRegistryClient({ url: reg.url, username: reg.username, password: reg.password });
    clients.set(key, c);
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
// Push

export class RegistryHttpError extends Error {
  constructor(
    readonly operation: string,
    readonly status: number,
    readonly body: string,
  ) {
    super(`${operation}: HTTP ${status} ${body.slice(0, 500)}`);
    this.name = 'RegistryHttpError';
  }
}

const pullScope = (repo: string): string => `repository:${repo}:pull`;
const pushScope = (repo: string): string => `repository:${repo}:pull,push`;

/** Uploads one blob unless the repository already has it (HEAD), with POST + monolithic PUT. Returns true if uploaded. */
export async function pushBlob(reg: RegistryEndpoint, repo: string, bytes: Buffer, digest: string = sha256(bytes)): Promise<boolean> {
  const c = rawClient(reg);
  const scope = pushScope(repo);
  const head = await c.request('HEAD', `/v2/${repo}/blobs/${digest}`, { scope });
  if (head.status === 200) return false;
  const start = await c.request('POST', `/v2/${repo}/blobs/uploads/`, { scope, headers: { 'content-length': '0' } });
  if (start.status !== 202) throw new RegistryHttpError(`start upload of ${digest} to ${repo}`, start.status, start.body.toString('utf8'));
  const location = header(start, 'location');
  if (!location) throw new Error(`upload start for ${repo} returned no Location`);
  // Location may be relative and may carry its own query (_state): merge digest into it.
  const put = new URL(location, reg.url);
  put.searchParams.set('digest', digest);
  const done = await c.request('PUT', put.toString(), { scope, body: bytes, headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes.length) } });
  if (done.status !== 201) throw new RegistryHttpError(`upload ${digest} to ${repo}`, done.status, done.body.toString('utf8'));
  return true;
}

/** PUTs manifest bytes; returns the Docker-Content-Digest the registry answered. */
export async function pushManifest(reg: RegistryEndpoint, repo: string, ref: string, bytes: Buffer, mediaType: string): Promise<string> {
  const res = await rawClient(reg).request('PUT', `/v2/${repo}/manifests/${ref}`, { scope: pushScope(repo), body: bytes, headers: { 'content-type': mediaType } });
  if (res.status !== 201) throw new RegistryHttpError(`push manifest ${repo}:${ref}`, res.status, res.body.toString('utf8'));
  return header(res, 'docker-content-digest') ?? sha256(bytes);
}

/**
 * Pushes content: blobs (skipping those present), an index's children by digest, then the manifest
 * under `ref` (a tag or a digest; default: the content's digest). Throws if the registry computes a
 * different digest than we did.
 */
export async function pushImage(reg: RegistryEndpoint, repo: string, ref: string | undefined, content: TestContent): Promise<{ digest: string }> {
  if (content.kind === 'index') {
    for (const child of content.children) await pushImage(reg, repo, undefined, child);
  } else {
    // A handful of small blobs: in parallel, a fraction of the wall-clock of a serial loop.
    const blobs = content.kind === 'image' ? [content.config, ...content.layers] : content.layers;
    const unique = new Map(blobs.map((b) => [b.digest, b.bytes]));
    await Promise.all([...unique].map(([digest, bytes]) => pushBlob(reg, repo, bytes, digest)));
  }
  const digest = await pushManifest(reg, repo, ref ?? content.digest, content.manifest, content.mediaType);
  if (digest !== content.digest) throw new Error(`registry computed ${digest} for ${repo}:${ref ?? content.digest}, expected ${content.digest}`);
  return { digest };
}

// ---------------------------------------------------------------------------------------------
// Read helpers for assertions

export interface FetchedManifest {
  bytes: Buffer;
  /** Docker-Content-Digest (or sha256 of the bytes when the header is missing). */
  digest: string;
  mediaType: string;
}

/** GET a manifest (tag or digest); null on 404. */
export async function getManifest(reg: RegistryEndpoint, repo: string, ref: string, accept: string = ACCEPT_ALL_MANIFESTS): Promise<FetchedManifest | null> {
  const res = await rawClient(reg).request('GET', `/v2/${repo}/manifests/${ref}`, { scope: pullScope(repo), headers: { accept } });
  if (res.status === 404) return null;
  if (res.status !== 200) throw new RegistryHttpError(`get manifest ${repo}:${ref}`, res.status, res.body.toString('utf8'));
  return { bytes: res.body, digest: header(res, 'docker-content-digest') ?? sha256(res.body), mediaType: header(res, 'content-type') ?? '' };
}

/** HEAD a manifest; null on 404. */
export async function headManifest(reg: RegistryEndpoint, repo: string, ref: string): Promise<{ digest: string; mediaType: string; size: number } | null> {
  const res = await rawClient(reg).request('HEAD', `/v2/${repo}/manifests/${ref}`, { scope: pullScope(repo), headers: { accept: ACCEPT_ALL_MANIFESTS } });
  if (res.status === 404) return null;
  if (res.status !== 200) throw new RegistryHttpError(`head manifest ${repo}:${ref}`, res.status, '');
  return { digest: header(res, 'docker-content-digest') ?? '', mediaType: header(res, 'content-type') ?? '', size: Number(header(res, 'content-length') ?? -1) };
}

/** Tags of a repository, all pages; [] when the repository does not exist. */
export async function listTags(reg: RegistryEndpoint, repo: string): Promise<string[]> {
  const tags: string[] = [];
  let next: string | undefined = `/v2/${repo}/tags/list`;
  while (next !== undefined) {
    const res = await rawClient(reg).request('GET', next, { scope: pullScope(repo) });
    if (res.status === 404) return [];
    if (res.status !== 200) throw new RegistryHttpError(`list tags of ${repo}`, res.status, res.body.toString('utf8'));
    tags.push(...((JSON.parse(res.body.toString('utf8')) as { tags?: string[] | null }).tags ?? []));
    next = nextLink(res);
  }
  return tags;
}

/** Repositories in the registry (/v2/_catalog), all pages. */
export async function catalog(reg: RegistryEndpoint): Promise<string[]> {
  const repos: string[] = [];
  let next: string | undefined = '/v2/_catalog?n=1000';
  while (next !== undefined) {
    const res = await rawClient(reg).request('GET', next, { scope: 'registry:catalog:*' });
    if (res.status !== 200) throw new RegistryHttpError('catalog', res.status, res.body.toString('utf8'));
    repos.push(...((JSON.parse(res.body.toString('utf8')) as { repositories?: string[] | null }).repositories ?? []));
    next = nextLink(res);
  }
  return repos;
}

/** Does the repository have this blob? */
export async function headBlob(reg: RegistryEndpoint, repo: string, digest: string): Promise<boolean> {
  const res = await rawClient(reg).request('HEAD', `/v2/${repo}/blobs/${digest}`, { scope: pullScope(repo), followRedirects: true });
  if (res.status === 200) return true;
  if (res.status === 404) return false;
  throw new RegistryHttpError(`head blob ${repo}@${digest}`, res.status, '');
}

/** A blob's bytes (following redirects); null on 404. Does not verify the digest: tests do. */
export async function getBlob(reg: RegistryEndpoint, repo: string, digest: string): Promise<Buffer | null> {
  const res = await rawClient(reg).request('GET', `/v2/${repo}/blobs/${digest}`, { scope: pullScope(repo), followRedirects: true });
  if (res.status === 404) return null;
  if (res.status !== 200) throw new RegistryHttpError(`get blob ${repo}@${digest}`, res.status, res.body.toString('utf8'));
  return res.body;
}

/** DELETE a manifest by digest; false when it did not exist. */
export async function deleteManifest(reg: RegistryEndpoint, repo: string, digest: string): Promise<boolean> {
  const res = await rawClient(reg).request('DELETE', `/v2/${repo}/manifests/${digest}`, { scope: `repository:${repo}:delete` });
  if (res.status === 202) return true;
  if (res.status === 404) return false;
  throw new RegistryHttpError(`delete ${repo}@${digest}`, res.status, res.body.toString('utf8'));
}

// ---------------------------------------------------------------------------------------------
// small utilities

export function header(res: { headers: Record<string, string | string[] | undefined> }, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

function nextLink(res: RawResponse): string | undefined {
  const link = header(res, 'link');
  const m = link ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link) : null;
  return m?.[1];
}

function basicHeader(e: RegistryEndpoint): string | undefined {
  if (e.username === undefined) return undefined;
  return `Basic ${Buffer.from(`${e.username}:${e.password ?? ''}`).toString('base64')}`;
}

/** Parses one WWW-Authenticate challenge: `Bearer realm="...",service="...",scope="..."`. */
export function parseChallenge(value: string): { scheme: string; params: Record<string, string> } {
  const m = /^\s*(\S+)\s*(.*)$/s.exec(value);
  const scheme = (m?.[1] ?? '').toLowerCase();
  const rest = m?.[2] ?? '';
  const params: Record<string, string> = {};
  const re = /([a-zA-Z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/g;
  for (let p = re.exec(rest); p !== null; p = re.exec(rest)) {
    params[(p[1] ?? '').toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '');
  }
  return { scheme, params };
}

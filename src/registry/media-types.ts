// Manifest media types and the parsing of manifests into the parts the copier needs.
import { createHash } from 'node:crypto';
import { UnsupportedContentError } from './errors.js';

export const MediaTypes = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociEmpty: 'application/vnd.oci.empty.v1+json',
  helmConfig: 'application/vnd.cncf.helm.config.v1+json',
  helmChart: 'application/vnd.cncf.helm.chart.content.v1.tar+gzip',
  helmProvenance: 'application/vnd.cncf.helm.chart.provenance.v1.prov',
} as const;

/** What we ask for: all four, or old registries answer schema 1. */
export const MANIFEST_ACCEPT = [MediaTypes.ociIndex, MediaTypes.dockerManifestList, MediaTypes.ociManifest, MediaTypes.dockerManifest].join(', ');

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
  artifactType?: string;
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  'os.version'?: string;
}

export interface ImageManifest {
  kind: 'manifest';
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  artifactType?: string;
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  kind: 'index';
  mediaType: string;
  manifests: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

export type ParsedManifest = ImageManifest | ImageIndex;

export function isIndexMediaType(mt: string | undefined): boolean {
  return mt === MediaTypes.ociIndex || mt === MediaTypes.dockerManifestList;
}

export function sha256Digest(bytes: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Digest algorithms Ferry verifies (OCI image-spec descriptor.md: sha256 and sha512 are registered). */
export const DIGEST_ALGORITHMS = { sha256: 64, sha512: 128 } as const;

/** The digest of `bytes` with the algorithm of `like` (a digest string), or undefined for an unknown algorithm. */
export function digestLike(like: string, bytes: Uint8Array | string): string | undefined {
  const algorithm = like.slice(0, like.indexOf(':'));
  if (algorithm !== 'sha256' && algorithm !== 'sha512') return undefined;
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}

/**
 * Parses manifest bytes. `headerType` is the Content-Type the registry sent; the body's own `mediaType`
 * wins when present (helm omits it, so an OCI manifest can arrive with only the header to go by).
 */
export function parseManifest(bytes: Uint8Array, headerType?: string): ParsedManifest {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new UnsupportedContentError('manifest is not valid JSON');
  }
  const declared = typeof doc.mediaType === 'string' ? doc.mediaType : undefined;
  const headerBase = headerType?.split(';')[0]?.trim();
  if (doc.schemaVersion === 1 || declared === MediaTypes.dockerSchema1 || headerBase === MediaTypes.dockerSchema1 || headerBase === MediaTypes.dockerSchema1Signed) {
    throw new UnsupportedContentError(
      'Docker schema 1 manifest: schema 1 is deprecated and cannot be copied with its digest intact; re-push the image with a current Docker or convert it (e.g. skopeo copy --format v2s2)',
    );
  }
  const mediaType = declared ?? (Array.isArray(doc.manifests) ? MediaTypes.ociIndex : (headerBase ?? MediaTypes.ociManifest));
  if (Array.isArray(doc.manifests)) {
    return {
      kind: 'index',
      mediaType: isIndexMediaType(mediaType) ? mediaType : MediaTypes.ociIndex,
      manifests: (doc.manifests as Descriptor[]).map(checkDescriptor),
      ...(doc.subject ? { subject: checkDescriptor(doc.subject as Descriptor) } : {}),
      ...(doc.annotations ? { annotations: doc.annotations as Record<string, string> } : {}),
    };
  }
  if (doc.config && Array.isArray(doc.layers)) {
    return {
      kind: 'manifest',
      mediaType: isIndexMediaType(mediaType) ? MediaTypes.ociManifest : mediaType,
      config: checkDescriptor(doc.config as Descriptor),
      layers: (doc.layers as Descriptor[]).map(checkDescriptor),
      ...(doc.subject ? { subject: checkDescriptor(doc.subject as Descriptor) } : {}),
      ...(typeof doc.artifactType === 'string' ? { artifactType: doc.artifactType } : {}),
      ...(doc.annotations ? { annotations: doc.annotations as Record<string, string> } : {}),
    };
  }
  throw new UnsupportedContentError(`unsupported manifest (media type ${mediaType}): neither an image manifest nor an index`);
}

function checkDescriptor(d: Descriptor): Descriptor {
  if (!d || typeof d.digest !== 'string' || !/^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(d.digest)) {
    throw new UnsupportedContentError(`invalid descriptor in manifest: ${JSON.stringify(d)?.slice(0, 200)}`);
  }
  // The size drives Content-Length, chunk arithmetic and the byte budget: a negative, fractional or
  // beyond-2^53 size (which JSON allows) would make all three lie, so it is refused here, once.
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw new UnsupportedContentError(`invalid descriptor in manifest: size of ${d.digest} must be a non-negative integer below 2^53, got ${JSON.stringify(d.size)?.slice(0, 40)}`);
  }
  return d;
}

/** "linux/arm64/v8" for a descriptor's platform. */
export function platformString(p: Platform | undefined): string {
  if (!p) return 'unknown';
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

/** The artifact kind by config media type, as Harbor classifies it. */
export function artifactKind(m: ParsedManifest): 'image' | 'chart' | 'artifact' {
  if (m.kind === 'index') return 'image';
  const cfg = m.artifactType ?? m.config.mediaType;
  if (cfg === MediaTypes.helmConfig) return 'chart';
  if (cfg === MediaTypes.dockerConfig || cfg === MediaTypes.ociConfig) return 'image';
  return 'artifact';
}

// Name and tag grammar of the OCI distribution spec; validated before a URL is built.
const NAME_RE = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
const TAG_RE = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
const DIGEST_RE = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export function isValidRepositoryName(name: string): boolean {
  return name.length <= 255 && NAME_RE.test(name);
}
export function isValidTag(tag: string): boolean {
  return TAG_RE.test(tag);
}
export function isDigest(ref: string): boolean {
  return DIGEST_RE.test(ref);
}

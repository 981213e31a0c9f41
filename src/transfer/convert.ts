// OCI → Docker schema 2 conversion, for registries that refuse OCI manifests (SWR's basic edition:
// `swr.convertToDocker`). Blobs are unchanged (an OCI image config is a Docker image config, gzip
// layers are the same bytes); only manifest media types change, so manifest digests change and
// signatures over the old digests no longer apply.
import { UnsupportedContentError } from '../registry/errors.js';
import { type Descriptor, MediaTypes, type ParsedManifest } from '../registry/media-types.js';

const LAYER_TYPES: Record<string, string> = {
  'application/vnd.oci.image.layer.v1.tar+gzip': 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  'application/vnd.oci.image.layer.v1.tar': 'application/vnd.docker.image.rootfs.diff.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip': 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  'application/vnd.docker.image.rootfs.diff.tar.gzip': 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  'application/vnd.docker.image.rootfs.diff.tar': 'application/vnd.docker.image.rootfs.diff.tar',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip': 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
};

export interface Converted {
  bytes: Buffer;
  mediaType: string;
}

/** Docker's own manifests are indented with three spaces; keep that so converted manifests look native. */
function encode(doc: unknown): Buffer {
  return Buffer.from(JSON.stringify(doc, null, 3));
}

function plain(d: Descriptor, mediaType: string): Record<string, unknown> {
  const out: Record<string, unknown> = { mediaType, size: d.size, digest: d.digest };
  const urls = (d as { urls?: string[] }).urls;
  if (urls?.length) out.urls = urls;
  return out;
}

/** True when the manifest needs converting (it is OCI); Docker manifests pass through unchanged. */
export function isOci(parsed: ParsedManifest): boolean {
  return parsed.mediaType === MediaTypes.ociManifest || parsed.mediaType === MediaTypes.ociIndex;
}

/** An OCI image manifest as Docker schema 2. Non-image artifacts and zstd layers cannot be converted. */
export function toDockerManifest(parsed: ParsedManifest): Converted {
  if (parsed.kind !== 'manifest') throw new Error('toDockerManifest expects an image manifest');
  if (parsed.config.mediaType !== MediaTypes.ociConfig && parsed.config.mediaType !== MediaTypes.dockerConfig) {
    throw new UnsupportedContentError(`cannot convert an artifact with config ${parsed.config.mediaType} to a Docker image (swr.convertToDocker)`);
  }
  const layers = parsed.layers.map((l) => {
    const mt = LAYER_TYPES[l.mediaType];
    if (!mt) throw new UnsupportedContentError(`cannot convert layer media type ${l.mediaType} to Docker schema 2 (swr.convertToDocker)`);
    return plain(l, mt);
  });
  return {
    mediaType: MediaTypes.dockerManifest,
    bytes: encode({ schemaVersion: 2, mediaType: MediaTypes.dockerManifest, config: plain(parsed.config, MediaTypes.dockerConfig), layers }),
  };
}

/** An OCI index as a Docker manifest list, pointing at the converted children (`children`: old digest → new). */
export function toDockerManifestList(parsed: ParsedManifest, children: Map<string, { digest: string; size: number }>): Converted {
  if (parsed.kind !== 'index') throw new Error('toDockerManifestList expects an index');
  const manifests = parsed.manifests.map((m) => {
    const c = children.get(m.digest) ?? { digest: m.digest, size: m.size };
    const entry: Record<string, unknown> = { mediaType: MediaTypes.dockerManifest, size: c.size, digest: c.digest };
    if (m.platform) entry.platform = m.platform;
    return entry;
  });
  return { mediaType: MediaTypes.dockerManifestList, bytes: encode({ schemaVersion: 2, mediaType: MediaTypes.dockerManifestList, manifests }) };
}

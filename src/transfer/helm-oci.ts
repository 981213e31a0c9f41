// ChartMuseum charts (Harbor <= 2.7 kept charts outside the registry) pushed as OCI charts, the way
// `helm push` stores them (helm pkg/registry: client.go Push, chart.go generateOCIAnnotations):
//   - config  application/vnd.cncf.helm.config.v1+json: Chart.yaml's metadata as JSON, with the fields
//     and field order of helm's chart.Metadata (Go json.Marshal: omitempty, map keys sorted, <>&
//     escaped), after helm's loader rules (apiVersion defaults to v1, requirements.yaml dependencies,
//     strings sanitized as chart.Metadata.Validate does);
//   - layers  the original .tgz bytes (application/vnd.cncf.helm.chart.content.v1.tar+gzip) and, when a
//     .prov exists, the provenance file (application/vnd.cncf.helm.chart.provenance.v1.prov), sorted
//     by digest;
//   - an OCI image manifest without a `mediaType` field, annotations org.opencontainers.image.title,
//     .version, .description, .url (home), .source (first source), .authors (maintainers), .created,
//     plus the chart's own annotations (which may not override title or version);
//   - tag = chart version with `+` written `_`.
// Deterministic: the same archive gives the same bytes, so the same manifest digest, every time.
// `org.opencontainers.image.created` is the modification time of Chart.yaml inside the archive (set by
// `helm package` when it wrote the archive: helm push uses the archive file's mtime, which is not
// available over HTTP); left out when the archive has none, never "now".
import { type Descriptor, MediaTypes, sha256Digest } from '../registry/media-types.js';
import type { ChartArchive } from './chart-archive.js';
import { sortedKeys } from './chart-metadata.js';

/** Go's json.Marshal: like JSON.stringify, but <, >, &, U+2028 and U+2029 are escaped. */
export function goJson(value: unknown): string {
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** The OCI tag helm pushes a chart version under. */
export function chartTag(version: string): string {
  return version.replace(/\+/g, '_');
}

export interface HelmOciChart {
  /** Manifest bytes (OCI image manifest, no mediaType field, as helm writes it). */
  manifest: Buffer;
  mediaType: string;
  digest: string;
  config: { descriptor: Descriptor; bytes: Buffer };
  /** Chart layer and (when given) provenance layer, in manifest order. */
  layers: { descriptor: Descriptor; bytes: Buffer }[];
  tag: string;
}

/** helm's generateOCIAnnotations: chart fields first, then the chart's own annotations (not title/version). */
export function chartAnnotations(metadata: Record<string, unknown>, created: string | undefined): Record<string, string> {
  const a: Record<string, string> = {};
  const add = (k: string, v: unknown) => {
    if (typeof v === 'string' && v.trim() !== '') a[k] = v;
  };
  add('org.opencontainers.image.description', metadata.description);
  add('org.opencontainers.image.title', metadata.name);
  add('org.opencontainers.image.version', metadata.version);
  add('org.opencontainers.image.url', metadata.home);
  add('org.opencontainers.image.created', created);
  add('org.opencontainers.image.source', (metadata.sources as string[] | undefined)?.[0]);
  const maintainers = (metadata.maintainers as { name?: string; email?: string }[] | undefined) ?? [];
  if (maintainers.length) add('org.opencontainers.image.authors', maintainers.map((m) => `${m.name ?? ''}${m.email ? ` (${m.email})` : ''}`).join(', '));
  for (const [k, v] of Object.entries((metadata.annotations as Record<string, string> | undefined) ?? {})) {
    if (k === 'org.opencontainers.image.version' || k === 'org.opencontainers.image.title') continue;
    a[k] = v;
  }
  return sortedKeys(a);
}

/** The manifest, config and layers `helm push` would produce for this archive (and provenance file). */
export function buildHelmOciChart(chart: ChartArchive, provenance?: Buffer): HelmOciChart {
  const configBytes = Buffer.from(goJson(chart.metadata));
  const config = { descriptor: { mediaType: MediaTypes.helmConfig, digest: sha256Digest(configBytes), size: configBytes.length }, bytes: configBytes };
  const layers: { descriptor: Descriptor; bytes: Buffer }[] = [{ descriptor: { mediaType: MediaTypes.helmChart, digest: chart.digest, size: chart.bytes.length }, bytes: chart.bytes }];
  if (provenance) layers.push({ descriptor: { mediaType: MediaTypes.helmProvenance, digest: sha256Digest(provenance), size: provenance.length }, bytes: provenance });
  layers.sort((a, b) => (a.descriptor.digest < b.descriptor.digest ? -1 : a.descriptor.digest > b.descriptor.digest ? 1 : 0));
  const manifest = Buffer.from(
    goJson({
      schemaVersion: 2,
      config: config.descriptor,
      layers: layers.map((l) => l.descriptor),
      annotations: chartAnnotations(chart.metadata, chart.created),
    }),
  );
  return { manifest, mediaType: MediaTypes.ociManifest, digest: sha256Digest(manifest), config, layers, tag: chartTag(String(chart.metadata.version)) };
}

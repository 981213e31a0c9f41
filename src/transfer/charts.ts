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
//
// The archive is read as a stream while it downloads (zlib → tar-stream; nothing is unpacked to
// disk; Chart.yaml and requirements.yaml are the only entries kept, at most 1 MiB each), and the whole
// archive is gunzipped and walked, so a truncated or corrupt archive fails before anything is pushed.
// The .tgz bytes are held in memory to be pushed as a blob once the manifest is known; charts are
// small (ChartMuseum's default upload cap is 20 MiB), and anything larger than `maxChartBytes`
// (64 MiB) fails that chart with a clear error.
import { createHash } from 'node:crypto';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import type { Logger } from 'pino';
import tarStream from 'tar-stream';
import { parse as parseYaml } from 'yaml';
import { basicAuthorizer } from '../http/auth.js';
import { readBody } from '../http/body.js';
import type { HttpResponse } from '../http/types.js';
import type { Credentials } from '../registry/auth.js';
import { AuthError, BodyTooLargeError, NotFoundError, RegistryError, UnsupportedContentError } from '../registry/errors.js';
import { type Descriptor, MediaTypes, isValidTag, sha256Digest } from '../registry/media-types.js';
import { putMonolithic, startUpload } from '../registry/upload.js';
import { type ArtifactContext, describeError } from './artifact-copier.js';
import type { DestinationState } from '../state/types.js';
import type { ArtifactResult } from './stats.js';
import { type TokenBucket, takeAll } from './throttle.js';

export const MAX_CHART_BYTES = 64 * 1024 * 1024;
export const MAX_PROVENANCE_BYTES = 1024 * 1024;
const MAX_METADATA_FILE_BYTES = 1024 * 1024;

/** A chart that cannot be converted: corrupt archive, no Chart.yaml, no name or version, too large. */
export class ChartError extends UnsupportedContentError {
  override name = 'ChartError';
}

export interface ChartArchive {
  /** The .tgz exactly as downloaded. */
  bytes: Buffer;
  digest: string;
  /** helm's chart.Metadata as a JSON-ready object, fields in helm's order. */
  metadata: Record<string, unknown>;
  /** RFC 3339 UTC modification time of Chart.yaml in the archive, when it has one. */
  created?: string | undefined;
}

/**
 * Reads a chart archive from a stream: counts and hashes it (bounded by maxBytes), gunzips and walks
 * every tar entry as it arrives, keeps `<top>/Chart.yaml` and `<top>/requirements.yaml`. Throws
 * ChartError for anything helm could not load.
 */
export async function readChartArchive(source: AsyncIterable<Uint8Array> | Readable | Buffer, opts: { maxBytes?: number } = {}): Promise<ChartArchive> {
  const maxBytes = opts.maxBytes ?? MAX_CHART_BYTES;
  const chunks: Buffer[] = [];
  const hash = createHash('sha256');
  let size = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
      size += chunk.length;
      if (size > maxBytes) return done(new ChartError(`chart archive is larger than ${maxBytes} bytes (the limit for ChartMuseum charts)`));
      chunks.push(chunk);
      hash.update(chunk);
      done(null, chunk);
    },
  });
  const extract = tarStream.extract();
  const input = Buffer.isBuffer(source) ? Readable.from([source]) : source instanceof Readable ? source : Readable.from(source);
  const piping = pipeline(input, meter, createGunzip(), extract);
  piping.catch(() => undefined); // reported through the entry loop or awaited below
  const files = new Map<string, { data: Buffer; mtime?: Date | undefined }>();
  const tops = new Set<string>();
  try {
    for await (const entry of extract) {
      const parts = entry.header.name.split('/').filter((p) => p !== '' && p !== '.');
      if (parts.length) tops.add(parts[0]!);
      const file = parts.slice(1).join('/');
      if (entry.header.type === 'file' && (file === 'Chart.yaml' || file === 'requirements.yaml') && !files.has(file)) {
        const data: Buffer[] = [];
        let n = 0;
        for await (const chunk of entry as AsyncIterable<Buffer>) {
          n += chunk.length;
          if (n > MAX_METADATA_FILE_BYTES) throw new ChartError(`${entry.header.name} is larger than ${MAX_METADATA_FILE_BYTES} bytes`);
          data.push(chunk);
        }
        files.set(file, { data: Buffer.concat(data), mtime: entry.header.mtime });
      } else {
        entry.resume();
      }
    }
    await piping;
  } catch (err) {
    if (err instanceof ChartError) throw err;
    throw new ChartError(`corrupt chart archive: ${(err as Error).message}`, { cause: err });
  }
  if (size === 0) throw new ChartError('corrupt chart archive: empty');
  const chartYaml = files.get('Chart.yaml');
  if (!chartYaml) throw new ChartError(`no Chart.yaml in the archive's top directory${tops.size ? ` (${[...tops].slice(0, 3).join(', ')})` : ''}`);
  const metadata = chartMetadata(chartYaml.data, files.get('requirements.yaml')?.data);
  const mtime = chartYaml.mtime?.getTime();
  return {
    bytes: Buffer.concat(chunks),
    digest: `sha256:${hash.digest('hex')}`,
    metadata,
    created: mtime && mtime > 0 ? rfc3339(new Date(mtime)) : undefined,
  };
}

/** Go's time.RFC3339 of a UTC time: 2006-01-02T15:04:05Z. */
function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d+Z$/, 'Z');
}

// ---------------------------------------------------------------------------------------------
// Chart.yaml → helm's chart.Metadata

type Yaml = Record<string, unknown>;

function parseYamlDoc(data: Buffer, file: string): Yaml {
  let doc: unknown;
  try {
    doc = parseYaml(data.toString('utf8'));
  } catch (err) {
    throw new ChartError(`cannot load ${file}: ${(err as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ChartError(`cannot load ${file}: not a mapping`);
  return doc as Yaml;
}

/** helm's sanitizeString: whitespace becomes a space, non-printable characters go. */
function sanitize(s: string): string {
  return s.replace(/\s/gu, ' ').replace(/[\p{C}]/gu, '');
}

/**
 * A scalar for a Go string field, as sigs.k8s.io/yaml converts it (numbers and booleans become their
 * text: `appVersion: 1.10` is "1.1", as helm reads it); null is empty; anything else fails.
 */
function str(v: unknown, field: string): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  throw new ChartError(`Chart.yaml: ${field} must be a string`);
}

function strList(v: unknown, field: string): string[] {
  if (v === null || v === undefined) return [];
  if (!Array.isArray(v)) throw new ChartError(`Chart.yaml: ${field} must be a list`);
  return v.map((x, i) => str(x, `${field}[${i}]`));
}

/** Go json.Marshal of a map: keys sorted. */
function sortedKeys<T>(o: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.keys(o).sort().map((k) => [k, o[k]!]));
}

/** interface{} values (import-values items) as Go marshals them: map keys sorted at every level. */
function goValue(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(goValue);
  if (v && typeof v === 'object') return sortedKeys(Object.fromEntries(Object.entries(v).map(([k, x]) => [k, goValue(x)])));
  return v;
}

function dependency(d: unknown, i: number): Record<string, unknown> {
  if (!d || typeof d !== 'object' || Array.isArray(d)) throw new ChartError('Chart.yaml: dependencies must not contain empty or null nodes');
  const y = d as Yaml;
  const out: Record<string, unknown> = {};
  out.name = sanitize(str(y.name, `dependencies[${i}].name`)); // no omitempty in helm
  const version = sanitize(str(y.version, `dependencies[${i}].version`));
  if (version) out.version = version;
  out.repository = sanitize(str(y.repository, `dependencies[${i}].repository`)); // no omitempty
  const condition = sanitize(str(y.condition, `dependencies[${i}].condition`));
  if (condition) out.condition = condition;
  const tags = strList(y.tags, `dependencies[${i}].tags`).map(sanitize);
  if (tags.length) out.tags = tags;
  if (y.enabled === true) out.enabled = true;
  for (const key of ['import-values', 'export-values']) {
    const v = y[key];
    if (v === null || v === undefined) continue;
    if (!Array.isArray(v)) throw new ChartError(`Chart.yaml: dependencies[${i}].${key} must be a list`);
    if (v.length) out[key] = v.map(goValue);
  }
  const alias = str(y.alias, `dependencies[${i}].alias`);
  if (alias) out.alias = alias;
  return out;
}

/**
 * helm's chart.Metadata (pkg/chart/metadata.go) from Chart.yaml (and requirements.yaml, whose
 * `dependencies` helm's loader reads into the same struct), as the object `helm push` marshals: the
 * struct's field order, empty fields left out. Requires name and version.
 */
export function chartMetadata(chartYaml: Buffer, requirementsYaml?: Buffer): Record<string, unknown> {
  const y = parseYamlDoc(chartYaml, 'Chart.yaml');
  if (requirementsYaml) {
    const r = parseYamlDoc(requirementsYaml, 'requirements.yaml');
    if (r.dependencies !== undefined) y.dependencies = r.dependencies;
  }
  const s = (field: string, clean = true): string => {
    const v = str(y[field], field);
    return clean ? sanitize(v) : v;
  };
  const name = s('name');
  const version = s('version', false);
  if (!name.trim()) throw new ChartError('Chart.yaml has no name');
  if (!version.trim()) throw new ChartError(`Chart.yaml of ${name} has no version`);
  if (name === '.' || name === '..' || name.includes('/') || name.includes('\\')) throw new ChartError(`Chart.yaml: chart name "${name}" is invalid`);
  const type = s('type', false);
  if (type !== '' && type !== 'application' && type !== 'library') throw new ChartError('Chart.yaml: type must be application or library');

  const m: Record<string, unknown> = {};
  const put = (key: string, value: unknown) => {
    if (value === '' || value === undefined || value === false || (Array.isArray(value) && value.length === 0)) return;
    if (value && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length === 0) return;
    m[key] = value;
  };
  put('name', name);
  put('home', s('home'));
  put('sources', strList(y.sources, 'sources').map(sanitize));
  put('version', version);
  put('description', s('description'));
  put('keywords', strList(y.keywords, 'keywords').map(sanitize));
  if (y.maintainers !== null && y.maintainers !== undefined) {
    if (!Array.isArray(y.maintainers)) throw new ChartError('Chart.yaml: maintainers must be a list');
    put(
      'maintainers',
      y.maintainers.map((x, i) => {
        if (!x || typeof x !== 'object' || Array.isArray(x)) throw new ChartError('Chart.yaml: maintainers must not contain empty or null nodes');
        const mt = x as Yaml;
        const out: Record<string, string> = {};
        for (const k of ['name', 'email', 'url']) {
          const v = sanitize(str(mt[k], `maintainers[${i}].${k}`));
          if (v) out[k] = v;
        }
        return out;
      }),
    );
  }
  put('icon', s('icon'));
  put('apiVersion', s('apiVersion', false) || 'v1'); // helm's loader: no apiVersion means a v1 chart
  put('condition', s('condition'));
  put('tags', s('tags'));
  put('appVersion', s('appVersion'));
  if (y.deprecated !== null && y.deprecated !== undefined && typeof y.deprecated !== 'boolean') throw new ChartError('Chart.yaml: deprecated must be true or false');
  put('deprecated', y.deprecated === true);
  if (y.annotations !== null && y.annotations !== undefined) {
    if (typeof y.annotations !== 'object' || Array.isArray(y.annotations)) throw new ChartError('Chart.yaml: annotations must be a mapping');
    put('annotations', sortedKeys(Object.fromEntries(Object.entries(y.annotations as Yaml).map(([k, v]) => [k, str(v, `annotations.${k}`)]))));
  }
  put('kubeVersion', s('kubeVersion'));
  if (y.dependencies !== null && y.dependencies !== undefined) {
    if (!Array.isArray(y.dependencies)) throw new ChartError('Chart.yaml: dependencies must be a list');
    put('dependencies', y.dependencies.map(dependency));
  }
  put('type', type);
  return m;
}

// ---------------------------------------------------------------------------------------------
// The OCI chart

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

// ---------------------------------------------------------------------------------------------
// Download and push

export interface ChartMuseumCopierOptions {
  state?: DestinationState | undefined;
  logger?: Logger | undefined;
  /** Credentials of a source registry by its config name: sent (Basic) to the registry's own host only. */
  credentials?: ((registry: string) => Promise<Credentials | undefined>) | undefined;
  /** The process-wide bandwidth bucket (uploads are throttled by it and the rule's). */
  processBucket?: TokenBucket | undefined;
  maxChartBytes?: number | undefined;
}

/**
 * Copies one ChartMuseum chart version (a WorkItem with `chartMuseum`): download, convert, push. Fills
 * and records an ArtifactResult like ArtifactCopier.copy; a failure fails this chart only.
 */
export class ChartMuseumCopier {
  constructor(private readonly opts: ChartMuseumCopierOptions = {}) {}

  async copy(ctx: ArtifactContext): Promise<ArtifactResult> {
    const { item } = ctx;
    const cm = item.chartMuseum;
    const tags = item.tags.length ? item.tags : cm ? [chartTag(cm.version)] : [];
    const result: ArtifactResult = {
      source: `${ctx.source.name}/${item.sourceRepository}:${tags[0] ?? item.sourceReference} (ChartMuseum)`,
      destination: `${ctx.destination.name}/${item.destinationRepository}`,
      sourceRepository: item.sourceRepository,
      destinationRepository: item.destinationRepository,
      status: 'failed',
      tags,
      kind: 'chart',
    };
    try {
      if (!cm) throw new Error('not a ChartMuseum chart');
      const url = cm.url ?? new URL(`chartrepo/${encodeURIComponent(cm.project)}/charts/${encodeURIComponent(`${cm.name}-${cm.version}.tgz`)}`, ctx.source.baseUrl).href;
      const creds = await this.opts.credentials?.(ctx.source.name);
      const chart = await readChartArchive(await this.download(ctx, new URL(url), creds), { maxBytes: this.opts.maxChartBytes });
      if (chart.metadata.name !== cm.name || chart.metadata.version !== cm.version) {
        throw new ChartError(`the archive holds ${String(chart.metadata.name)} ${String(chart.metadata.version)}, but ChartMuseum lists it as ${cm.name} ${cm.version}`);
      }
      let provenance: Buffer | undefined;
      if (cm.provUrl) {
        const res = await this.download(ctx, new URL(cm.provUrl), creds);
        provenance = await readBody({ body: res, statusCode: 200 }, MAX_PROVENANCE_BYTES, { registry: ctx.source.name, repository: item.sourceRepository, what: 'provenance file' }).catch((err: unknown) => {
          throw err instanceof BodyTooLargeError ? new ChartError(`provenance file is larger than ${MAX_PROVENANCE_BYTES} bytes`) : err;
        });
      }
      const oci = buildHelmOciChart(chart, provenance);
      result.digest = oci.digest;
      for (const tag of tags) if (!isValidTag(tag)) throw new ChartError(`chart version ${cm.version} does not make a valid OCI tag ("${tag}")`);

      const toPush: string[] = [];
      const kept: string[] = [];
      let present = 0;
      for (const tag of tags) {
        const existing = await ctx.destination.headManifest(item.destinationRepository, tag, true);
        if (existing?.digest === oci.digest) present++;
        else if (existing && !ctx.override) kept.push(tag);
        else toPush.push(tag);
      }
      if (toPush.length === 0) {
        if (kept.length) return this.finish(ctx, { ...result, status: 'skipped', reason: `tag${kept.length > 1 ? 's' : ''} ${kept.join(', ')} already at the destination with other content (override: false)` });
        return this.finish(ctx, { ...result, status: 'present' });
      }
      await ctx.prepareDestination?.(item.destinationRepository);
      const bytesBefore = ctx.stats.bytes;
      for (const blob of [oci.config, ...oci.layers]) await this.pushBlob(ctx, blob.descriptor, blob.bytes);
      for (const tag of toPush) await ctx.destination.putManifest(item.destinationRepository, tag, oci.manifest, oci.mediaType);
      await this.opts.state?.recordManifest(ctx.destinationKey, item.destinationRepository, oci.digest);
      return this.finish(ctx, {
        ...result,
        status: 'copied',
        ...(kept.length ? { reason: `kept existing tag(s) ${kept.join(', ')} (override: false)` } : {}),
        bytes: ctx.stats.bytes - bytesBefore,
      });
    } catch (err) {
      if (ctx.stop?.aborted || ctx.signal?.aborted) {
        return this.finish(ctx, { ...result, reason: 'interrupted before it was complete; the next run copies it', error: { name: 'Interrupted', message: (err as Error).message } });
      }
      const reason = err instanceof ChartError ? `ChartMuseum chart ${cm ? `${cm.name}-${cm.version}.tgz` : ''}: ${err.message}` : (err as Error).message;
      return this.finish(ctx, { ...result, status: 'failed', reason, error: describeError(err) });
    }
  }

  private finish(ctx: ArtifactContext, result: ArtifactResult): ArtifactResult {
    ctx.stats.addArtifact(result);
    const level = result.status === 'failed' ? 'error' : 'info';
    this.opts.logger?.[level]({ rule: ctx.item.rule, source: result.source, destination: result.destination, status: result.status, reason: result.reason }, `chart ${result.status}`);
    return result;
  }

  /**
   * GET through the source registry's transport (its TLS settings, retries, limits, redirects). The
   * registry's Basic credentials go to the registry's own origin only: an absolute chart URL or a
   * redirect to another origin gets none.
   */
  private async download(ctx: ArtifactContext, url: URL, creds: Credentials | undefined): Promise<HttpResponse['body']> {
    const client = ctx.source;
    const res = await client.transport.send({
      method: 'GET',
      url,
      headers: { accept: 'application/x-tar, application/gzip, application/octet-stream, */*' },
      repository: ctx.item.sourceRepository,
      signal: ctx.signal,
      kind: 'chart',
      blobBody: true,
      auth: creds ? basicAuthorizer(client.baseUrl.origin, creds) : undefined,
    });
    if (res.statusCode === 200) return res.body;
    await res.body.dump().catch(() => undefined);
    const details = { registry: client.name, repository: ctx.item.sourceRepository, status: res.statusCode, method: 'GET' };
    const what = `download ${res.url.pathname}`;
    if (res.statusCode === 404) throw new NotFoundError(`${what}: not found`, details);
    if (res.statusCode === 401 || res.statusCode === 403) throw new AuthError(`${what}: ${res.statusCode === 401 ? 'authentication failed' : 'permission denied'}`, details);
    throw new RegistryError(`${what} failed`, details);
  }

  private async pushBlob(ctx: ArtifactContext, descriptor: Descriptor, bytes: Buffer): Promise<void> {
    const repo = ctx.item.destinationRepository;
    if (await ctx.destination.headBlob(repo, descriptor.digest)) {
      ctx.stats.addBlob('skipped', descriptor.size);
      return;
    }
    await takeAll([ctx.ruleBucket, this.opts.processBucket], bytes.length, ctx.signal);
    const session = await startUpload(ctx.destination, repo);
    if (session.mounted) return;
    await putMonolithic(ctx.destination, repo, session.location, bytes, bytes.length, descriptor.digest, ctx.signal);
    ctx.stats.addBytes(bytes.length);
    ctx.stats.addBlob('uploaded', descriptor.size);
  }
}

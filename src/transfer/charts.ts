// ChartMuseum charts (Harbor <= 2.7 kept charts outside the registry) copied as OCI charts: download
// the archive (chart-archive.ts reads and checks it), convert it the way `helm push` stores charts
// (helm-oci.ts, chart-metadata.ts), push. Deterministic: the same archive gives the same manifest
// digest every time.
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { basicAuthorizer } from '../http/auth.js';
import { readBody } from '../http/body.js';
import type { HttpResponse } from '../http/types.js';
import type { ChartMuseumRef } from '../providers/types.js';
import type { Credentials } from '../registry/auth.js';
import type { BlobStream } from '../registry/client.js';
import { AuthError, BodyTooLargeError, NotFoundError, RegistryError } from '../registry/errors.js';
import { isValidTag } from '../registry/media-types.js';
import type { DestinationState } from '../state/types.js';
import { type ArtifactContext, describeError } from './artifact-copier.js';
import type { BlobCopier, BlobSource } from './blob-copier.js';
import { readChartArchive } from './chart-archive.js';
import { ChartError } from './chart-metadata.js';
import { type HelmOciChart, buildHelmOciChart, chartTag } from './helm-oci.js';
import type { ArtifactResult } from './stats.js';

export const MAX_PROVENANCE_BYTES = 1024 * 1024;

export interface ChartMuseumCopierOptions {
  /** The blob queue every artifact's blobs go through (dedup, mounts, retries, throttling, state). */
  blobs: BlobCopier;
  state?: DestinationState | undefined;
  logger?: Logger | undefined;
  /** Credentials of a source registry by its config name: sent (Basic) to the registry's own host only. */
  credentials?: ((registry: string) => Promise<Credentials | undefined>) | undefined;
  /** Where a chart version's .tgz is (the source provider knows its ChartMuseum layout: Harbor). */
  chartUrl?: ((registry: string, chart: ChartMuseumRef) => URL | undefined) | undefined;
  maxChartBytes?: number | undefined;
}

/**
 * Copies one ChartMuseum chart version (a WorkItem with `chartMuseum`): download, convert, push. Fills
 * and records an ArtifactResult like ArtifactCopier.copy; a failure fails this chart only.
 */
export class ChartMuseumCopier {
  constructor(private readonly opts: ChartMuseumCopierOptions) {}

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
      const url = this.opts.chartUrl?.(ctx.source.name, cm) ?? (cm.url ? new URL(cm.url) : undefined);
      if (!url) throw new ChartError(`registry ${ctx.source.name} has no ChartMuseum download URL for ${cm.name} ${cm.version}`);
      const creds = await this.opts.credentials?.(ctx.source.name);
      const chart = await readChartArchive(await this.download(ctx, url, creds), { maxBytes: this.opts.maxChartBytes });
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
      await this.pushBlobs(ctx, oci);
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

  /**
   * The chart's config, archive and provenance through the blob queue, like any artifact's blobs: the
   * converted bytes are served to it from memory (ConvertedBlobs), so dedup, mounts, retries, bandwidth
   * caps, digest verification and the state apply to charts too.
   */
  private async pushBlobs(ctx: ArtifactContext, oci: HelmOciChart): Promise<void> {
    const blobs = [oci.config, ...oci.layers];
    const source = new ConvertedBlobs(`${ctx.source.name} (ChartMuseum)`, new Map(blobs.map((b) => [b.descriptor.digest, b.bytes])));
    const settled = await Promise.allSettled(
      blobs.map((b) =>
        this.opts.blobs.copy({
          source,
          sourceRepository: ctx.item.sourceRepository,
          destination: ctx.destination,
          destinationKey: ctx.destinationKey,
          destinationRepository: ctx.item.destinationRepository,
          descriptor: b.descriptor,
          stats: ctx.stats,
          ruleBucket: ctx.ruleBucket,
          signal: ctx.signal,
          stop: ctx.stop,
        }),
      ),
    );
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
}

/** Blobs Ferry made (a converted chart), served like a registry's: ranges included, for resumed uploads. */
class ConvertedBlobs implements BlobSource {
  constructor(
    readonly name: string,
    private readonly blobs: Map<string, Buffer>,
  ) {}

  async getBlob(repository: string, digest: string, opts: { start?: number; end?: number } = {}): Promise<BlobStream> {
    const bytes = this.blobs.get(digest);
    if (!bytes) throw new NotFoundError(`blob ${digest} is not part of the converted chart`, { registry: this.name, repository });
    const start = Math.min(opts.start ?? 0, bytes.length);
    const end = opts.end !== undefined ? Math.min(opts.end + 1, bytes.length) : bytes.length;
    return { body: Readable.from([bytes.subarray(start, end)], { objectMode: false }), size: bytes.length, start };
  }
}

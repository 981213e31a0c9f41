// ChartMuseum charts (Harbor <= 2.7 kept charts outside the registry) copied as OCI charts: download
// the archive (chart-archive.ts reads and checks it), convert it the way `helm push` stores charts
// (helm-oci.ts, chart-metadata.ts), push. Deterministic: the same archive gives the same manifest
// digest every time.
import type { Logger } from 'pino';
import { basicAuthorizer } from '../http/auth.js';
import { readBody } from '../http/body.js';
import type { HttpResponse } from '../http/types.js';
import type { Credentials } from '../registry/auth.js';
import { AuthError, BodyTooLargeError, NotFoundError, RegistryError } from '../registry/errors.js';
import { type Descriptor, isValidTag } from '../registry/media-types.js';
import { putMonolithic, startUpload } from '../registry/upload.js';
import { type ArtifactContext, describeError } from './artifact-copier.js';
import type { DestinationState } from '../state/types.js';
import { readChartArchive } from './chart-archive.js';
import { ChartError } from './chart-metadata.js';
import { buildHelmOciChart, chartTag } from './helm-oci.js';
import type { ArtifactResult } from './stats.js';
import { type TokenBucket, takeAll } from './throttle.js';

export const MAX_PROVENANCE_BYTES = 1024 * 1024;

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

// Copies one artifact (a manifest tree) from source to destination: children before their index,
// blobs before their manifest, the tag last, so a destination tag never points at something
// incomplete. Manifest bytes are pushed exactly as pulled, so digests (and signatures) survive.
import type { Logger } from 'pino';
import type { ArtifactKind } from '../config/schema.js';
import type { WorkItem } from '../plan/types.js';
import type { RegistryClient } from '../registry/client.js';
import { RegistryError, UnsupportedContentError } from '../registry/errors.js';
import { type Descriptor, MediaTypes, type ParsedManifest, artifactKind, parseManifest, sha256Digest } from '../registry/media-types.js';
import { isOci, toDockerManifest, toDockerManifestList } from './convert.js';
import type { BlobCopier } from './blob-copier.js';
import { ArtifactBytes } from './byte-plan.js';
import type { DestinationState } from '../state/types.js';
import type { PushTurn } from '../engine/push-order.js';
import type { ArtifactResult, RuleStats } from './stats.js';
import type { TokenBucket } from './throttle.js';

/** Layers that registries must not be asked to store (Windows foreign layers live at their `urls`). */
const FOREIGN_LAYER_TYPES = new Set([
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
]);

export interface ArtifactContext {
  item: WorkItem;
  source: RegistryClient;
  destination: RegistryClient;
  destinationKey: string;
  override: boolean;
  stats: RuleStats;
  ruleBucket?: TokenBucket | undefined;
  signal?: AbortSignal | undefined;
  /** Graceful stop: no new blob copy starts once it fires (see SyncOptions.stop). */
  stop?: AbortSignal | undefined;
  /** Kind filter applied once the manifest is known (plain registries don't list kinds). */
  kindAllowed?: ((kind: ArtifactKind) => boolean) | undefined;
  /** Makes the destination namespace exist (provider-specific); called before the first push. */
  prepareDestination?: ((repository: string) => Promise<void>) | undefined;
  /** Rewrite OCI manifests and indexes as Docker schema 2 / manifest lists (swr.convertToDocker). */
  convertToDocker?: boolean | undefined;
  /** Added to the error when the destination refuses an OCI manifest (names the option that helps). */
  ociRejectedHint?: string | undefined;
  /** Rule `platforms`: copy only these children of an index (empty or absent: all, byte for byte). */
  platforms?: string[] | undefined;
  /** Rule `copyReferrers` (absent = true): copy signatures, attestations, SBOMs and other referrers. */
  copyReferrers?: boolean | undefined;
  /**
   * What the destination repository held when this run reached it (one tags/list or bulk inventory
   * per repository): a tag it lacks needs no HEAD, a tag listed with a digest none, and an empty
   * repository no blob HEADs. Undefined (or resolving undefined): HEAD per tag.
   */
  destinationTags?: Promise<DestinationTags | undefined> | undefined;
  /** Every tag of the source repository (from the listing), so referrers discovery needs no tags/list. */
  sourceTags?: ReadonlySet<string> | undefined;
  /** Set by the copier: the destination repository had no tag when this run reached it (no HEADs inside). */
  destinationEmpty?: boolean | undefined;
  /**
   * The artifact's place in its destination repository's push order (engine/push-order.ts): the tag
   * push waits for `ready()`; `done()` once the tags are pushed or the artifact ended.
   */
  pushTurn?: PushTurn | undefined;
  /** Set by the copier: the artifact's bytes planned and done (progress), fed as its manifests are read. */
  bytes?: ArtifactBytes | undefined;
}

/** What a destination repository holds, learnt once per repository and run. */
export interface DestinationTags {
  /**
   * tag → digest from the product's bulk listing (Harbor, TCR, SWR), when it has one. Trusted for the
   * tags it lists; a tag it lacks is looked up in `tags()` (a cloud listing may lag the registry).
   */
  inventory?: ReadonlyMap<string, string> | undefined;
  /** The registry's own tag list (one tags/list, fetched on first use); undefined when it failed. */
  tags(): Promise<ReadonlySet<string> | undefined>;
}

/** OCI children converted to Docker: old digest → what is pushed instead. */
type ConvertedChildren = Map<string, { digest: string; size: number; bytes: Buffer; mediaType: string; parsed: ParsedManifest }>;

export interface ManifestHooks {
  /**
   * Lets a later stage rewrite an index before it is pushed (platform filtering) or a manifest
   * (format conversion). Returning undefined keeps the bytes as pulled; `{ skip }` leaves the
   * artifact out (reported skipped with that reason), e.g. an index with none of the rule's platforms.
   */
  rewrite?: (ctx: ArtifactContext, manifest: { bytes: Buffer; mediaType: string; parsed: ParsedManifest }) => Promise<{ bytes: Buffer; mediaType: string } | { skip: string } | undefined>;
  /**
   * Copies what refers to the artifact (signatures, SBOMs) once it is in place. Returns how many.
   * `content` is the calling copier, for what the referrer manifests need at the destination.
   */
  afterPush?: (ctx: ArtifactContext, digest: string, content: ContentCopier) => Promise<number>;
}

/** Copies what a manifest needs at the destination (blobs, or an index's children), not the manifest itself. */
export interface ContentCopier {
  copyContent(ctx: ArtifactContext, parsed: ParsedManifest): Promise<void>;
}

export class ArtifactCopier implements ContentCopier {
  constructor(
    private readonly blobs: BlobCopier,
    private readonly state: DestinationState,
    private readonly logger?: Logger,
    private readonly hooks: ManifestHooks = {},
  ) {}

  async copy(context: ArtifactContext): Promise<ArtifactResult> {
    const ctx: ArtifactContext = { ...context, bytes: context.bytes ?? new ArtifactBytes(context.stats, context.item.size) };
    const { item } = ctx;
    const source = `${ctx.source.name}/${item.sourceRepository}${refSuffix(item.sourceReference)}`;
    const destination = `${ctx.destination.name}/${item.destinationRepository}`;
    const result: ArtifactResult = {
      source,
      destination,
      sourceRepository: item.sourceRepository,
      destinationRepository: item.destinationRepository,
      status: 'failed',
      tags: item.tags,
      kind: item.kind,
    };
    try {
      const known = await ctx.destinationTags?.catch(() => undefined);
      // A listing with digests (bulk inventory) that already shows every tag at the listed source
      // digest: present, without a request at either side.
      const inventory = known?.inventory;
      if (inventory && item.digest && item.tags.length && !ctx.convertToDocker && !ctx.platforms?.length && item.tags.every((t) => inventory.get(t) === item.digest)) {
        result.digest = item.digest;
        const referrers = await this.hooks.afterPush?.(ctx, item.digest, this);
        return this.finish(ctx, { ...result, status: 'present', referrers });
      }
      const manifest = await ctx.source.getManifest(item.sourceRepository, item.sourceReference);
      result.digest = manifest.digest;
      const parsed = parseManifest(manifest.bytes, manifest.mediaType);
      const kind = item.kind ?? artifactKind(parsed);
      result.kind = kind;
      if (ctx.kindAllowed && !ctx.kindAllowed(kind)) {
        return this.finish(ctx, { ...result, status: 'skipped', reason: `kind ${kind} not selected by filters.kinds` });
      }

      const hooked = await this.hooks.rewrite?.(ctx, { bytes: manifest.bytes, mediaType: manifest.mediaType, parsed });
      if (hooked && 'skip' in hooked) return this.finish(ctx, { ...result, status: 'skipped', reason: hooked.skip });
      let rewritten: { bytes: Buffer; mediaType: string } = hooked ?? manifest;
      let effective = rewritten === manifest ? parsed : parseManifest(rewritten.bytes, rewritten.mediaType);
      let converted: ConvertedChildren | undefined;
      if (ctx.convertToDocker && isOci(effective)) {
        converted = new Map();
        const content = effective;
        rewritten = await this.convertTree(ctx, content, converted);
        effective = content; // blobs and children are copied from the OCI original, pushed converted
      }
      const target = { bytes: rewritten.bytes, mediaType: rewritten.mediaType, digest: rewritten === manifest ? manifest.digest : sha256Digest(rewritten.bytes) };
      if (target.digest !== manifest.digest) result.destinationDigest = target.digest;

      // Which destination tags need this manifest, which already have it, which we must leave alone.
      const toPush: string[] = [];
      const kept: string[] = [];
      let present = 0;
      const refs = item.tags.length ? item.tags : [target.digest];
      for (const ref of refs) {
        const existing = await destinationManifest(ctx.destination, ctx.item.destinationRepository, known, ref);
        if (existing?.digest === target.digest) present++;
        else if (existing && !ctx.override && ref !== target.digest) kept.push(ref);
        else toPush.push(ref);
      }
      if (toPush.length === 0) {
        if (kept.length) {
          return this.finish(ctx, { ...result, status: 'skipped', reason: `tag${kept.length > 1 ? 's' : ''} ${kept.join(', ')} already at the destination with other content (override: false)` });
        }
        const referrers = await this.hooks.afterPush?.(ctx, target.digest, this);
        return this.finish(ctx, { ...result, status: 'present', referrers });
      }

      await ctx.prepareDestination?.(item.destinationRepository);
      const bytesBefore = ctx.stats.bytes;
      const empty = known && !known.inventory?.size && (await known.tags())?.size === 0;
      await this.copyContent(empty ? { ...ctx, destinationEmpty: true } : ctx, effective, converted);
      // Blobs and children copied in parallel with other artifacts; the tags in planned order.
      await ctx.pushTurn?.ready();
      try {
        await this.pushManifest(ctx, effective, async () => {
          for (const ref of toPush) {
            await ctx.destination.putManifest(item.destinationRepository, ref, target.bytes, target.mediaType).catch((err: unknown) => {
              throw withOciHint(err, ctx, target.mediaType);
            });
          }
        });
      } finally {
        ctx.pushTurn?.done();
      }
      await this.state.recordManifest(ctx.destinationKey, item.destinationRepository, target.digest);
      // Signatures and attestations sign the OCI digest: they cannot follow a converted manifest.
      const referrers = converted ? undefined : await this.hooks.afterPush?.(ctx, target.digest, this);
      if (converted) this.logger?.warn({ rule: item.rule, source, destinationDigest: target.digest }, 'converted to Docker schema 2: signatures and referrers not copied');
      return this.finish(ctx, {
        ...result,
        status: 'copied',
        tags: item.tags,
        ...(kept.length ? { reason: `kept existing tag(s) ${kept.join(', ')} (override: false)` } : {}),
        referrers,
        bytes: ctx.stats.bytes - bytesBefore,
      });
    } catch (err) {
      if (ctx.stop?.aborted || ctx.signal?.aborted) {
        const why = ((ctx.stop?.aborted ? ctx.stop.reason : ctx.signal?.reason) as Error | undefined)?.message ?? 'stopping';
        return this.finish(ctx, {
          ...result,
          status: 'failed',
          reason: `${/^interrupted/i.test(why) ? why : `interrupted (${why})`} before it was complete; the next run resumes it`,
          error: { name: 'Interrupted', message: (err as Error).message },
        });
      }
      return this.finish(ctx, { ...result, status: 'failed', reason: (err as Error).message, error: describeError(err) });
    }
  }


  private finish(ctx: ArtifactContext, result: ArtifactResult): ArtifactResult {
    ctx.pushTurn?.done();
    ctx.bytes?.end();
    ctx.stats.addArtifact(result);
    const level = result.status === 'failed' ? 'error' : 'info';
    this.logger?.[level]({ rule: ctx.item.rule, source: result.source, destination: result.destination, status: result.status, reason: result.reason }, `artifact ${result.status}`);
    return result;
  }

  /**
   * Everything a manifest refers to, before the manifest itself: the blobs of an image manifest, or
   * every child (recursively) of an index.
   */
  async copyContent(ctx: ArtifactContext, effective: ParsedManifest, converted?: ConvertedChildren, walk: IndexWalk = new IndexWalk()): Promise<void> {
    if (effective.kind === 'index') {
      // Each distinct child once (an index may list one child many times), a few at a time (an index
      // of 25k entries must not open 25k manifest fetches), within a depth and a total budget.
      const children = walk.enter(effective.manifests, `${ctx.source.name}/${ctx.item.sourceRepository}`);
      try {
        await settleLimited(children, INDEX_CHILD_CONCURRENCY, (child) =>
          converted ? this.copyConvertedChild(ctx, converted.get(child.digest)!, walk) : this.copyChild(ctx, child, walk),
        );
      } finally {
        walk.leave();
      }
      return;
    }
    const blobs = uniqueByDigest([effective.config, ...effective.layers].filter((d) => !FOREIGN_LAYER_TYPES.has(d.mediaType)));
    ctx.bytes?.manifestRead(blobs);
    await settleAll(
      blobs.map((descriptor) =>
        this.blobs
          .copy({
          source: ctx.source,
          sourceRepository: ctx.item.sourceRepository,
          destination: ctx.destination,
          destinationKey: ctx.destinationKey,
          destinationRepository: ctx.item.destinationRepository,
          descriptor,
          stats: ctx.stats,
          ruleBucket: ctx.ruleBucket,
          signal: ctx.signal,
          stop: ctx.stop,
          destinationEmpty: ctx.destinationEmpty,
          })
          .then((outcome) => (ctx.bytes?.blobDone(descriptor), outcome)),
      ),
    );
  }

  /**
   * Converts an OCI manifest, or an index and its children, to Docker media types (fetching the
   * children to convert them; nothing is pushed yet). Fills `children` for copyConvertedChild.
   */
  private async convertTree(ctx: ArtifactContext, parsed: ParsedManifest, children: ConvertedChildren): Promise<{ bytes: Buffer; mediaType: string }> {
    if (parsed.kind === 'manifest') return toDockerManifest(parsed);
    if (parsed.manifests.length > MAX_INDEX_CHILDREN) throw new IndexTooLargeError(`${ctx.source.name}/${ctx.item.sourceRepository}: the index lists more than ${MAX_INDEX_CHILDREN} manifests`);
    for (const child of parsed.manifests) {
      const m = await ctx.source.getManifest(ctx.item.sourceRepository, child.digest);
      const childParsed = parseManifest(m.bytes, m.mediaType || child.mediaType);
      if (childParsed.kind !== 'manifest') throw new UnsupportedContentError('cannot convert nested indexes to Docker manifest lists (swr.convertToDocker)');
      const c = isOci(childParsed) ? toDockerManifest(childParsed) : { bytes: m.bytes, mediaType: m.mediaType };
      children.set(child.digest, { ...c, digest: sha256Digest(c.bytes), size: c.bytes.length, parsed: childParsed });
    }
    return toDockerManifestList(parsed, children);
  }

  /**
   * Pushes a manifest. When the registry answers MANIFEST_BLOB_UNKNOWN for blobs that the state or
   * this run recorded as present (deleted or garbage-collected at the destination since), forgets
   * them, copies them again and pushes once more: a stale state must not fail an artifact forever.
   */
  private async pushManifest(ctx: ArtifactContext, content: ParsedManifest, put: () => Promise<unknown>): Promise<void> {
    try {
      await put();
    } catch (err) {
      if (!(err instanceof RegistryError && err.code === 'MANIFEST_BLOB_UNKNOWN') || content.kind !== 'manifest') throw err;
      this.logger?.warn({ rule: ctx.item.rule, repository: ctx.item.destinationRepository }, 'a blob recorded as present is missing at the destination: copying again');
      await Promise.all([content.config, ...content.layers].map((d) => this.blobs.forget(ctx.destinationKey, ctx.item.destinationRepository, d.digest)));
      await this.copyContent(ctx, content);
      await put();
    }
  }

  private async copyConvertedChild(ctx: ArtifactContext, child: { digest: string; bytes: Buffer; mediaType: string; parsed: ParsedManifest }, walk: IndexWalk): Promise<void> {
    const repo = ctx.item.destinationRepository;
    if (!ctx.destinationEmpty && (await ctx.destination.headManifest(repo, child.digest, true))) return;
    await this.copyContent(ctx, child.parsed, undefined, walk);
    await this.pushManifest(ctx, child.parsed, () => ctx.destination.putManifest(repo, child.digest, child.bytes, child.mediaType));
    await this.state.recordManifest(ctx.destinationKey, repo, child.digest);
  }

  private async copyChild(ctx: ArtifactContext, child: Descriptor, walk: IndexWalk): Promise<void> {
    const repo = ctx.item.destinationRepository;
    if (!ctx.destinationEmpty && (await ctx.destination.headManifest(repo, child.digest, true))) {
      await this.state.recordManifest(ctx.destinationKey, repo, child.digest);
      return;
    }
    const manifest = await ctx.source.getManifest(ctx.item.sourceRepository, child.digest);
    const parsed = parseManifest(manifest.bytes, manifest.mediaType || child.mediaType);
    await this.copyContent(ctx, parsed, undefined, walk);
    await this.pushManifest(ctx, parsed, () => ctx.destination.putManifest(repo, child.digest, manifest.bytes, manifest.mediaType || child.mediaType));
    await this.state.recordManifest(ctx.destinationKey, repo, child.digest);
  }
}

/** Index children copied at once per index (manifest fetches and HEADs; their blobs go through the blob queue). */
const INDEX_CHILD_CONCURRENCY = 8;
/** Nesting of indexes within one artifact: real images use 1 (an index of manifests), rarely 2. */
export const MAX_INDEX_DEPTH = 8;
/** Distinct child manifests within one artifact (multi-platform images have tens; attestations double that). */
export const MAX_INDEX_CHILDREN = 1024;

/** An index tree larger than Ferry walks for one artifact: the artifact fails, the others go on. */
export class IndexTooLargeError extends UnsupportedContentError {
  override name = 'IndexTooLargeError';
}

/**
 * The walk of one artifact's index tree: the children already taken (by digest, so a child listed
 * twice, or under two nested indexes, is copied once), the depth, and the total against the cap.
 */
export class IndexWalk {
  private readonly seen = new Set<string>();
  private depth = 0;

  enter(children: Descriptor[], where: string): Descriptor[] {
    if (++this.depth > MAX_INDEX_DEPTH) throw new IndexTooLargeError(`${where}: indexes nested more than ${MAX_INDEX_DEPTH} deep`);
    const fresh = children.filter((c) => (this.seen.has(c.digest) ? false : (this.seen.add(c.digest), true)));
    if (this.seen.size > MAX_INDEX_CHILDREN) throw new IndexTooLargeError(`${where}: the index tree lists more than ${MAX_INDEX_CHILDREN} distinct manifests`);
    return fresh;
  }

  leave(): void {
    this.depth--;
  }
}

/**
 * Runs `fn` over `items`, at most `limit` at a time, like settleAll: it settles only when no call is
 * still running, then rejects with the first failure. After a failure no new item is started.
 */
async function settleLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { reason: unknown } | undefined;
  const lane = async (): Promise<void> => {
    while (next < items.length && !failure) {
      const item = items[next++]!;
      await fn(item).catch((reason: unknown) => {
        failure ??= { reason };
      });
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  if (failure) throw failure.reason;
}

/**
 * Like Promise.all, but waits for every copy to settle before rejecting with the first failure: an
 * artifact is finished only when none of its copies is still running (so a graceful stop waits for
 * the blobs in flight, and a finished run leaves nothing uploading behind it).
 */
async function settleAll(promises: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/** A destination that refuses an OCI manifest gets an error naming the option that converts it. */
function withOciHint(err: unknown, ctx: ArtifactContext, mediaType: string): unknown {
  if (!ctx.ociRejectedHint || !(err instanceof RegistryError) || (mediaType !== MediaTypes.ociManifest && mediaType !== MediaTypes.ociIndex)) return err;
  if (err.status !== 400 && err.status !== 415 && err.code !== 'MANIFEST_INVALID' && err.code !== 'UNSUPPORTED') return err;
  return new RegistryError(`the registry refused an OCI manifest; ${ctx.ociRejectedHint}`, {
    registry: err.registry,
    repository: err.repository,
    status: err.status,
    code: err.code,
    detail: err.detail,
    cause: err,
  });
}

/**
 * The destination's manifest under `ref` (copy and dry-run inspection alike): from the repository's
 * listing when it answers, else a HEAD.
 */
export async function destinationManifest(destination: RegistryClient, repository: string, known: DestinationTags | undefined, ref: string): Promise<{ digest: string } | undefined> {
  if (known) {
    const listed = known.inventory?.get(ref);
    if (listed) return { digest: listed };
    const tags = await known.tags();
    // An empty repository holds no manifest either; otherwise a tag it does not list is absent.
    if (tags && (tags.size === 0 || !isDigestRef(ref)) && !tags.has(ref)) return undefined;
  }
  return destination.headManifest(repository, ref, true);
}

/** Tags cannot contain ':'; digests always do. */
function isDigestRef(ref: string): boolean {
  return ref.includes(':');
}

function uniqueByDigest(descriptors: Descriptor[]): Descriptor[] {
  const seen = new Set<string>();
  return descriptors.filter((d) => (seen.has(d.digest) ? false : (seen.add(d.digest), true)));
}

function refSuffix(ref: string): string {
  return ref.includes(':') && ref.startsWith('sha') ? `@${ref}` : `:${ref}`;
}


export function describeError(err: unknown): ArtifactResult['error'] {
  const e = err as Error;
  if (err instanceof RegistryError) {
    return { name: e.name, message: e.message, registry: err.registry, repository: err.repository, status: err.status, code: err.code };
  }
  return { name: e?.name ?? 'Error', message: e?.message ?? String(err) };
}

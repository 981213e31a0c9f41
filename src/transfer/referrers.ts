// Referrers: what refers to a copied artifact (cosign signatures, attestations and SBOMs, OCI 1.1
// referrers such as notation signatures or `oras attach` SBOMs) follows it to the destination, with
// the same digests so signatures still verify.
//
// Found at the source, for a subject digest `sha256:<hex>`:
//   - cosign's tag scheme: tags `sha256-<hex>.sig`, `.att`, `.sbom` in the source repository (the tag
//     list is read once per repository and run);
//   - OCI 1.1 referrers: the Referrers API (GET /v2/<name>/referrers/<digest>) when the source answers
//     it, plus the `sha256-<hex>` fallback tag holding an index when that tag exists (registries
//     without the API, or referrers pushed before the registry had it).
// Pushed to the destination in the form it supports:
//   - tag-scheme manifests under the same tag (override: false leaves a differing tag alone);
//   - referrers by digest; when the destination's PUT answer has no `OCI-Subject` header (it does not
//     process `subject`, e.g. distribution 2.8), Ferry maintains the `sha256-<hex>` fallback tag there
//     itself, merging with what the tag already lists.
// Recursive: a signature of an SBOM, an attestation of a signature, ... (depth-limited, cycle-safe).
// For an index, the referrers of each copied child are copied too (`cosign sign --recursive` signs
// the children; per-platform SBOMs attach to them), besides the index's own.
//
// The count returned (ArtifactResult.referrers) is the number of referrer manifests pushed in this
// run; those already at the destination are not counted.
import type { Logger } from 'pino';
import type { RegistryClient } from '../registry/client.js';
import { NotFoundError } from '../registry/errors.js';
import { type Descriptor, MediaTypes, type ParsedManifest, isIndexMediaType, parseManifest, sha256Digest } from '../registry/media-types.js';
import type { ArtifactContext, ContentCopier, ManifestHooks } from './artifact-copier.js';
import type { DestinationState } from '../state/types.js';
import { filterIndex, parsePlatformPattern } from './platforms.js';
import type { RuleStats } from './stats.js';

/** cosign's tag scheme: `<alg>-<hex>.<suffix>`. */
export const COSIGN_SUFFIXES = ['sig', 'att', 'sbom'] as const;

/** Tags that belong to a subject: cosign's `sha256-<hex>.sig|.att|.sbom` and the referrers fallback `sha256-<hex>`. */
export const REFERRER_TAG = /^sha256-[0-9a-f]{64}(?:\.(?:sig|att|sbom))?$/;

export interface ReferrersCopierOptions {
  state?: DestinationState | undefined;
  logger?: Logger | undefined;
  /** How deep referrers of referrers are followed (default 8). */
  maxDepth?: number | undefined;
}

/** The tag a digest's cosign artifacts and OCI referrers fallback index use: `sha256:<hex>` → `sha256-<hex>`. */
export function digestTag(digest: string): string {
  return digest.replace(':', '-');
}

/** One thing that refers to a subject: a cosign tag, or a manifest (by digest) whose `subject` is it. */
export type Found = { kind: 'tag'; tag: string } | { kind: 'referrer'; descriptor: Descriptor };

/** The descriptor of a referrer as the Referrers API and the fallback index list it. */
export function referrerDescriptor(bytes: Buffer, mediaType: string, parsed: ParsedManifest, listed?: Descriptor): Descriptor {
  const d: Descriptor = { mediaType, digest: sha256Digest(bytes), size: bytes.length };
  const artifactType = (parsed.kind === 'manifest' ? (parsed.artifactType ?? parsed.config.mediaType) : undefined) ?? listed?.artifactType;
  if (artifactType) d.artifactType = artifactType;
  const annotations = parsed.annotations ?? listed?.annotations;
  if (annotations && Object.keys(annotations).length) d.annotations = annotations;
  return d;
}

/** Per-run memory (keyed by the run's RuleStats, so a long-lived engine forgets it with the run). */
interface RunCache {
  /** `<source registry>/<repository>` → its tags. */
  tags: Map<string, Promise<Set<string>>>;
  /** Source registry name → whether it answers the Referrers API. */
  sourceApi: Map<string, boolean>;
  /** Destination key → whether it processes `subject` (OCI-Subject / Referrers API). */
  destinationApi: Map<string, boolean>;
}

export class ReferrersError extends Error {
  override name = 'ReferrersError';
}

export class ReferrersCopier {
  private readonly runs = new WeakMap<RuleStats, RunCache>();
  /** Serializes updates of one fallback tag at one destination. */
  private readonly locks = new Map<string, Promise<unknown>>();
  /** One copy of a subject's referrers at a time per destination repository (several tags, one digest). */
  private readonly inflight = new Map<string, Promise<number>>();
  private readonly maxDepth: number;

  constructor(private readonly opts: ReferrersCopierOptions) {
    this.maxDepth = opts.maxDepth ?? 8;
  }

  /**
   * Copies the referrers of `digest` (and of `children`, an index's copied children) from the source
   * repository to the destination repository, recursively. Every referrer is tried; if any fails,
   * throws a ReferrersError naming how many and the first reason (the artifact is then reported
   * failed, and the next run tries again). Returns how many referrer manifests were pushed. `content`
   * copies what each referrer manifest needs first (its blobs): the artifact copier that calls this.
   */
  async copy(ctx: ArtifactContext, digest: string, children: Descriptor[], content: ContentCopier): Promise<number> {
    const key = `${ctx.destinationKey}|${ctx.item.destinationRepository}|${digest}`;
    const running = this.inflight.get(key);
    if (running) {
      // Another work item (another tag of the same digest) is copying them right now.
      await running.catch(() => undefined);
      return 0;
    }
    const work = this.copyAll(ctx, digest, children, content);
    this.inflight.set(key, work);
    try {
      return await work;
    } finally {
      this.inflight.delete(key);
    }
  }

  /** Whether anything at the source refers to `digest` (for warnings when a digest changed). */
  async hasReferrers(ctx: ArtifactContext, digest: string): Promise<boolean> {
    return (await this.discover(ctx, digest)).length > 0;
  }

  private async copyAll(ctx: ArtifactContext, digest: string, children: Descriptor[], content: ContentCopier): Promise<number> {
    const visited = new Set<string>();
    const errors: Error[] = [];
    let count = await this.copyTree(ctx, content, digest, 0, visited, errors);
    for (const child of children) count += await this.copyTree(ctx, content, child.digest, 0, visited, errors);
    if (errors.length) {
      throw new ReferrersError(`${errors.length} referrer(s) (signatures, attestations, SBOMs) could not be copied: ${errors[0]!.message}`, { cause: errors[0] });
    }
    return count;
  }

  private async copyTree(ctx: ArtifactContext, content: ContentCopier, subject: string, depth: number, visited: Set<string>, errors: Error[]): Promise<number> {
    if (visited.has(subject)) return 0;
    visited.add(subject);
    if (depth >= this.maxDepth) {
      this.opts.logger?.warn({ rule: ctx.item.rule, repository: ctx.item.sourceRepository, subject }, `referrers deeper than ${this.maxDepth} levels not followed`);
      return 0;
    }
    let found: Found[];
    try {
      found = await this.discover(ctx, subject);
    } catch (err) {
      errors.push(err as Error);
      return 0;
    }
    let count = 0;
    for (const f of found) {
      try {
        const copied = f.kind === 'tag' ? await this.copyTagged(ctx, content, f.tag) : await this.copyReferrer(ctx, content, subject, f.descriptor);
        if (!copied) continue;
        if (copied.pushed) count++;
        count += await this.copyTree(ctx, content, copied.digest, depth + 1, visited, errors);
      } catch (err) {
        const what = f.kind === 'tag' ? `tag ${f.tag}` : `referrer ${f.descriptor.digest}`;
        this.opts.logger?.warn({ rule: ctx.item.rule, repository: ctx.item.sourceRepository, subject, err: (err as Error).message }, `${what} not copied`);
        errors.push(err as Error);
      }
    }
    return count;
  }

  /** Everything at the source that refers to `subject`: cosign tags, then OCI referrers (API and fallback tag). */
  async discover(ctx: ArtifactContext, subject: string): Promise<Found[]> {
    const repo = ctx.item.sourceRepository;
    const tags = await this.sourceTags(ctx);
    const prefix = digestTag(subject);
    const found: Found[] = COSIGN_SUFFIXES.filter((s) => tags.has(`${prefix}.${s}`)).map((s) => ({ kind: 'tag', tag: `${prefix}.${s}` }));
    const seen = new Set<string>();
    const add = (descriptors: Descriptor[]) => {
      for (const d of descriptors) {
        if (seen.has(d.digest) || d.digest === subject) continue;
        seen.add(d.digest);
        found.push({ kind: 'referrer', descriptor: d });
      }
    };
    const run = this.run(ctx);
    if (run.sourceApi.get(ctx.source.name) !== false) {
      // 404 means no Referrers API; any other refusal of this optional endpoint is treated the same
      // (with a warning) rather than failing every artifact of a registry with a quirky answer.
      const index = await ctx.source.referrers(repo, subject).catch((err: unknown) => {
        if (ctx.signal?.aborted) throw err;
        this.opts.logger?.warn({ registry: ctx.source.name, repository: repo, err: (err as Error).message }, 'Referrers API request failed; using the fallback tag only for this run');
        return undefined;
      });
      run.sourceApi.set(ctx.source.name, index !== undefined);
      if (index) add(indexEntries(index.bytes));
    }
    if (tags.has(prefix)) {
      const fallback = await ctx.source.getManifest(repo, prefix);
      const entries = indexEntries(fallback.bytes);
      if (entries.length === 0 && !isIndexDocument(fallback.bytes)) {
        this.opts.logger?.warn({ rule: ctx.item.rule, repository: repo, tag: prefix }, 'referrers fallback tag does not hold an index; ignored');
      }
      add(entries);
    }
    return found;
  }

  /** A cosign tag: the same tag at the destination, content first. */
  private async copyTagged(ctx: ArtifactContext, content: ContentCopier, tag: string): Promise<{ digest: string; pushed: boolean } | undefined> {
    const repo = ctx.item.destinationRepository;
    const m = await ctx.source.getManifest(ctx.item.sourceRepository, tag);
    const existing = await ctx.destination.headManifest(repo, tag, true);
    if (existing?.digest === m.digest) return { digest: m.digest, pushed: false };
    if (existing && !ctx.override) {
      this.opts.logger?.info({ rule: ctx.item.rule, repository: repo, tag }, 'destination tag holds other content; left alone (override: false)');
      return undefined;
    }
    const parsed = parseManifest(m.bytes, m.mediaType);
    await content.copyContent(ctx, parsed);
    const put = await ctx.destination.putManifest(repo, tag, m.bytes, m.mediaType);
    await this.opts.state?.recordManifest(ctx.destinationKey, repo, m.digest);
    // A tagged manifest may carry a subject too (cosign in OCI 1.1 mode): keep it discoverable.
    if (parsed.subject && !put.ociSubject) await this.addToFallback(ctx, parsed.subject.digest, referrerDescriptor(m.bytes, m.mediaType, parsed));
    return { digest: m.digest, pushed: true };
  }

  /** An OCI referrer: by digest at the destination, and listed in the fallback tag where the destination needs it. */
  private async copyReferrer(ctx: ArtifactContext, content: ContentCopier, subject: string, listed: Descriptor): Promise<{ digest: string; pushed: boolean } | undefined> {
    const repo = ctx.item.destinationRepository;
    const run = this.run(ctx);
    const present = await ctx.destination.headManifest(repo, listed.digest, true);
    if (present) {
      // Already there: make sure it can be found (a run interrupted between push and tag update).
      if (!(await this.destinationProcessesSubject(ctx, subject))) await this.addToFallback(ctx, subject, withoutUndefined(listed));
      return { digest: listed.digest, pushed: false };
    }
    const m = await ctx.source.getManifest(ctx.item.sourceRepository, listed.digest);
    const parsed = parseManifest(m.bytes, m.mediaType || listed.mediaType);
    if (parsed.subject?.digest !== subject) {
      // A stale or foreign entry of a fallback index: not a referrer of this subject.
      this.opts.logger?.warn({ rule: ctx.item.rule, repository: ctx.item.sourceRepository, subject, referrer: listed.digest }, 'listed as a referrer but its subject differs; not copied');
      return undefined;
    }
    const mediaType = m.mediaType || listed.mediaType;
    await content.copyContent(ctx, parsed);
    const put = await ctx.destination.putManifest(repo, listed.digest, m.bytes, mediaType);
    await this.opts.state?.recordManifest(ctx.destinationKey, repo, listed.digest);
    run.destinationApi.set(ctx.destinationKey, !!put.ociSubject);
    if (!put.ociSubject) await this.addToFallback(ctx, subject, referrerDescriptor(m.bytes, mediaType, parsed, listed));
    return { digest: listed.digest, pushed: true };
  }

  /** Does the destination keep referrers itself? Known from a PUT's OCI-Subject, else asked once per run. */
  private async destinationProcessesSubject(ctx: ArtifactContext, subject: string): Promise<boolean> {
    const run = this.run(ctx);
    const known = run.destinationApi.get(ctx.destinationKey);
    if (known !== undefined) return known;
    const answer = await ctx.destination.referrers(ctx.item.destinationRepository, subject).catch((err: unknown) => {
      if (ctx.signal?.aborted) throw err;
      return undefined; // no usable Referrers API: keep the fallback tag
    });
    run.destinationApi.set(ctx.destinationKey, answer !== undefined);
    return answer !== undefined;
  }

  /**
   * Adds `descriptor` to the destination's `sha256-<hex>` fallback index of `subject` (created when
   * missing; other entries and fields kept). Serialized per tag within this process.
   */
  private async addToFallback(ctx: ArtifactContext, subject: string, descriptor: Descriptor): Promise<void> {
    const repo = ctx.item.destinationRepository;
    const tag = digestTag(subject);
    const key = `${ctx.destinationKey}|${repo}|${tag}`;
    const previous = this.locks.get(key) ?? Promise.resolve();
    const update = previous.catch(() => undefined).then(() => updateFallbackTag(ctx.destination, repo, tag, descriptor, this.opts.logger));
    this.locks.set(key, update);
    try {
      await update;
    } finally {
      if (this.locks.get(key) === update) this.locks.delete(key);
    }
  }

  private run(ctx: ArtifactContext): RunCache {
    let run = this.runs.get(ctx.stats);
    if (!run) this.runs.set(ctx.stats, (run = { tags: new Map(), sourceApi: new Map(), destinationApi: new Map() }));
    return run;
  }

  private sourceTags(ctx: ArtifactContext): Promise<ReadonlySet<string>> {
    // The listing's own tag list of the repository, when the engine passes it: no tags/list here.
    if (ctx.sourceTags) return Promise.resolve(ctx.sourceTags);
    const run = this.run(ctx);
    const key = `${ctx.source.name}/${ctx.item.sourceRepository}`;
    let tags = run.tags.get(key);
    if (!tags) {
      tags = ctx.source.listTags(ctx.item.sourceRepository).then((list) => new Set(list));
      // A window of repositories, not the catalog: listings come a repository at a time.
      if (run.tags.size >= 256) run.tags.delete(run.tags.keys().next().value!);
      run.tags.set(key, tags);
      tags.catch(() => run.tags.delete(key));
    }
    return tags;
  }
}

/** GET the fallback index (or start an empty one), add the descriptor unless listed, PUT it back. */
export async function updateFallbackTag(client: RegistryClient, repository: string, tag: string, descriptor: Descriptor, logger?: Logger): Promise<boolean> {
  let doc: Record<string, unknown> = { schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: [] };
  try {
    const existing = await client.getManifest(repository, tag, true);
    if (isIndexDocument(existing.bytes)) doc = JSON.parse(existing.bytes.toString('utf8')) as Record<string, unknown>;
    else logger?.warn({ registry: client.name, repository, tag }, 'referrers fallback tag held something other than an index; replaced');
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
  }
  const manifests = Array.isArray(doc.manifests) ? (doc.manifests as Descriptor[]) : [];
  if (manifests.some((d) => d?.digest === descriptor.digest)) return false;
  doc.manifests = [...manifests, descriptor];
  doc.mediaType ??= MediaTypes.ociIndex;
  await client.putManifest(repository, tag, Buffer.from(JSON.stringify(doc)), MediaTypes.ociIndex);
  return true;
}

function isIndexDocument(bytes: Buffer): boolean {
  try {
    const doc = JSON.parse(bytes.toString('utf8')) as { manifests?: unknown };
    return Array.isArray(doc.manifests);
  } catch {
    return false;
  }
}

/** The descriptors of an index (Referrers API answer or fallback tag); [] for anything else. */
function indexEntries(bytes: Buffer): Descriptor[] {
  try {
    const parsed = parseManifest(bytes, MediaTypes.ociIndex);
    return parsed.kind === 'index' ? parsed.manifests : [];
  } catch {
    return [];
  }
}

function withoutUndefined(d: Descriptor): Descriptor {
  return Object.fromEntries(Object.entries(d).filter(([, v]) => v !== undefined)) as unknown as Descriptor;
}

// ---------------------------------------------------------------------------------------------
// The engine's default hooks: platform filtering before the push, referrers after it.

export interface DefaultHooksOptions {
  referrers: ReferrersCopier;
  logger?: Logger | undefined;
}

/**
 * `rewrite` filters an index's children by the rule's `platforms` (a new index, new digest) and
 * remembers the children that will be copied; `afterPush` copies the referrers of the artifact and of
 * those children unless the rule says `copyReferrers: false`.
 */
export function defaultManifestHooks(opts: DefaultHooksOptions): ManifestHooks {
  const seen = new WeakMap<ArtifactContext, { children: Descriptor[]; originalDigest?: string }>();
  return {
    async rewrite(ctx, manifest) {
      // A rule listing (plain registries list every tag) also yields the referrer tags themselves:
      // they travel with their subject, and copying the fallback index as it is would undo the merge.
      if (ctx.copyReferrers === true && ctx.item.tags.length > 0 && ctx.item.tags.every((t) => REFERRER_TAG.test(t))) {
        return { skip: 'signature, attestation, SBOM or referrers index tag: copied with the artifact it refers to (copyReferrers)' };
      }
      const patterns = (ctx.platforms ?? []).map(parsePlatformPattern);
      const result = filterIndex(manifest.bytes, manifest.parsed, patterns);
      const children = manifest.parsed.kind === 'index' ? manifest.parsed.manifests : [];
      if (result.action === 'skip') return { skip: result.reason };
      if (result.action === 'keep') {
        seen.set(ctx, { children });
        return undefined;
      }
      const originalDigest = sha256Digest(manifest.bytes);
      seen.set(ctx, { children: result.kept, originalDigest });
      opts.logger?.info(
        { rule: ctx.item.rule, repository: ctx.item.sourceRepository, kept: result.kept.length, dropped: result.dropped.length, sourceDigest: originalDigest, destinationDigest: sha256Digest(result.bytes) },
        'index filtered by platforms: the destination index has a new digest',
      );
      return { bytes: result.bytes, mediaType: result.mediaType };
    },

    async afterPush(ctx, digest, content) {
      if (ctx.copyReferrers === false) return 0;
      let known = seen.get(ctx);
      // The listing knows every referrer and says there are none: for an image manifest (no
      // children whose own referrers would count), nothing to look up at either side.
      if (ctx.item.referrers === 0 && (known ? known.children.length === 0 && !known.originalDigest : ctx.item.mediaType !== undefined && !isIndexMediaType(ctx.item.mediaType))) return 0;
      if (!known) {
        // Called without our rewrite (custom hooks): read the pushed manifest to find its children.
        const m = await ctx.destination.getManifest(ctx.item.destinationRepository, digest, true);
        const parsed = parseManifest(m.bytes, m.mediaType);
        known = { children: parsed.kind === 'index' ? parsed.manifests : [] };
      }
      const count = await opts.referrers.copy(ctx, digest, known.children, content);
      if (known.originalDigest && (await opts.referrers.hasReferrers(ctx, known.originalDigest).catch(() => false))) {
        opts.logger?.warn(
          { rule: ctx.item.rule, repository: ctx.item.sourceRepository, sourceDigest: known.originalDigest, destinationDigest: digest },
          "the source index has signatures or other referrers; they are not copied because platform filtering changed the index's digest (the children's are)",
        );
      }
      return count;
    },
  };
}

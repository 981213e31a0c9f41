// deleteRemote: removing at a rule's destination what the rule put there, once it is gone from the
// source. Two triggers reach it:
//   - a sync's complete listing no longer holds a source tag the rule pushed (`deleteGoneTags`, after
//     the run's copies; the candidates come from the rule's state per listed repository, plus every
//     tag of a repository gone altogether, see `GoneTags`);
//   - Harbor reports an artifact deleted at the source (a webhook; `deleteAtDestination`, from the
//     daemon's runner).
// One rule for both, applied in one place (`deleteIfOurs`): never delete something Ferry did not put
// there. The destination reference must still resolve to a digest that Ferry's records say this rule
// pushed there for that source artifact:
//   - after a listing, the rule's state (what the rule pushed per source tag, stored in the state
//     database: state/types.ts RuleState): the destination tag must still hold the digest recorded for it;
//   - for a webhook, the source must first confirm the deletion: it answers 404 for the deleted digest
//     (for an event without a digest, for the tag), so a late or replayed DELETE after a re-push keeps
//     the live replica; then the source artifact must pass the rule's filters and map (same plan as a copy) to
//     that destination repository and tag; the destination digest must be the deleted artifact's, or
//     what this rule's history says that artifact became (platform filtering, conversion); and the
//     state must record that Ferry pushed that manifest to that repository.
// Registries delete manifests by digest, so every destination tag pointing at it goes too, as in
// Harbor, where deleting an artifact removes all its tags: a sync therefore keeps a candidate whose
// digest another still-published source tag of the rule maps to.
import type { Logger } from 'pino';
import type { RuleConfig } from '../config/schema.js';
import type { RulePlan } from '../plan/types.js';
import { registryKey } from '../providers/index.js';
import type { Provider } from '../providers/types.js';
import type { DestinationState, PushedTag, RuleState } from '../state/types.js';
import type { ArtifactResult } from '../transfer/stats.js';
import type { RuleReport } from './report.js';

const DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

// ---------------------------------------------------------------------------------------------------
// The one check

export type OwnershipVerdict = { ours: true } | { ours: false; reason: string };

/**
 * HEADs `reference` in the destination repository and deletes the manifest it resolves to only when
 * `isOurs` accepts that digest. `absent`: nothing there; `kept`: something Ferry cannot prove it put there.
 */
export async function deleteIfOurs(
  destination: Provider,
  repository: string,
  reference: string,
  isOurs: (digest: string) => OwnershipVerdict | Promise<OwnershipVerdict>,
): Promise<{ status: 'deleted' | 'kept' | 'absent'; digest?: string; reason?: string }> {
  const found = await destination.client.headManifest(repository, reference, true);
  if (!found) return { status: 'absent', reason: 'not at the destination' };
  const verdict = await isOurs(found.digest);
  if (!verdict.ours) return { status: 'kept', digest: found.digest, reason: verdict.reason };
  await destination.client.deleteManifest(repository, found.digest);
  return { status: 'deleted', digest: found.digest };
}

// ---------------------------------------------------------------------------------------------------
// After a complete listing (sync)

export type DeletionCandidate = PushedTag;

/** Candidates split by the shared-manifest rule: `keep` says why each kept one stays. */
export interface DeletionDecision {
  delete: DeletionCandidate[];
  keep: { candidate: DeletionCandidate; reason: string }[];
}

/**
 * The deletion candidates of one source repository the run listed: what `rule` pushed to
 * `destination` from it whose source tag `listedTags` (every tag the listing returned for that
 * repository, filtered or not) no longer holds. One index range of the rule's state; memory holds
 * the candidates only.
 */
export async function repositoryDeletionCandidates(
  state: RuleState,
  rule: string,
  destination: string,
  sourceRepository: string,
  listedTags: ReadonlySet<string>,
): Promise<DeletionCandidate[]> {
  const gone: DeletionCandidate[] = [];
  for await (const pushed of state.pushedIn(rule, destination, sourceRepository)) if (!listedTags.has(pushed.sourceTag)) gone.push(pushed);
  return gone;
}

/**
 * The deletion candidates of source repositories gone altogether: every tag `rule` pushed from a
 * repository that is in scope (`inScope`: the rule's repository filters, the shard) but that a
 * complete listing did not return (`wasListed` false; asked of the database in a cooperative run).
 * One pass over the rule's distinct source repositories, then an index range per vanished one.
 */
export async function vanishedRepositoryCandidates(
  state: RuleState,
  rule: string,
  destination: string,
  wasListed: (sourceRepository: string) => boolean | Promise<boolean>,
  inScope: (sourceRepository: string) => boolean,
): Promise<DeletionCandidate[]> {
  const vanished: string[] = [];
  for await (const repository of state.pushedRepositories(rule, destination)) {
    if (inScope(repository) && !(await wasListed(repository))) vanished.push(repository);
  }
  const gone: DeletionCandidate[] = [];
  // After the walk: the pages of pushedRepositories are not interleaved with other reads.
  for (const repository of vanished) for await (const pushed of state.pushedIn(rule, destination, repository)) gone.push(pushed);
  return gone;
}

/**
 * Registries delete manifests, not tags: deleting a digest takes every tag pointing at it. So a
 * candidate is kept when another entry of the rule that is not itself a candidate (its source tag is
 * still published, or its repository is out of scope) points at the same manifest. `isCandidate`
 * defaults to membership in `candidates` (a cooperative run may answer from the database).
 */
export async function sharedManifestCheck(
  state: RuleState,
  rule: string,
  destination: string,
  candidates: readonly DeletionCandidate[],
  isCandidate?: (t: PushedTag) => boolean | Promise<boolean>,
): Promise<DeletionDecision> {
  const key = (t: PushedTag) => `${t.sourceRepository}\n${t.sourceTag}`;
  const keys = isCandidate ? undefined : new Set(candidates.map(key));
  const candidate = isCandidate ?? ((t: PushedTag) => keys!.has(key(t)));
  const result: DeletionDecision = { delete: [], keep: [] };
  for (const pushed of candidates) {
    const sharing = await state.pushedManifest(rule, destination, pushed.repository, pushed.digest);
    let other: PushedTag | undefined;
    for (const t of sharing) {
      if (t.sourceRepository === pushed.sourceRepository && t.sourceTag === pushed.sourceTag) continue;
      if (!(await candidate(t))) {
        other = t;
        break;
      }
    }
    if (other) result.keep.push({ candidate: pushed, reason: `the same manifest is still published for ${other.sourceRepository}:${other.sourceTag}` });
    else result.delete.push(pushed);
  }
  return result;
}

/**
 * One run's deleteRemote bookkeeping (one process): fed each source repository as it is planned,
 * it keeps that repository's candidates and its name, never its tags; `finish` adds the repositories
 * gone from the source and applies the shared-manifest rule. Memory: the listed repository names
 * and the candidates.
 */
export class GoneTags {
  private readonly listed = new Set<string>();
  /** Candidates by source repository (only repositories that have some). */
  private readonly candidates = new Map<string, DeletionCandidate[]>();

  constructor(
    private readonly state: RuleState,
    private readonly rule: string,
    private readonly destination: string,
    private readonly inScope: (sourceRepository: string) => boolean,
  ) {}

  /** A source repository the listing returned, with every tag it listed for it. */
  async repository(sourceRepository: string, listedTags: ReadonlySet<string>): Promise<void> {
    if (this.listed.has(sourceRepository)) {
      // Listed again in the same run (a listing that came back to it): a tag of either part is live.
      const prior = this.candidates.get(sourceRepository);
      if (!prior) return;
      const left = prior.filter((t) => !listedTags.has(t.sourceTag));
      if (left.length) this.candidates.set(sourceRepository, left);
      else this.candidates.delete(sourceRepository);
      return;
    }
    this.listed.add(sourceRepository);
    const gone = await repositoryDeletionCandidates(this.state, this.rule, this.destination, sourceRepository, listedTags);
    if (gone.length) this.candidates.set(sourceRepository, gone);
  }

  /**
   * A repository the listing could not read (refused, failed): neither listed nor gone, so none of
   * its tags is judged gone in this run.
   */
  unreadable(sourceRepository: string): void {
    this.listed.add(sourceRepository);
    this.candidates.delete(sourceRepository);
  }

  /** The candidates of the repositories fed so far (a cooperative unit hands them to the run's finisher). */
  found(): DeletionCandidate[] {
    return [...this.candidates.values()].flat();
  }

  /** After a complete listing: every candidate, decided by the shared-manifest rule. */
  async finish(): Promise<DeletionDecision> {
    const vanished = await vanishedRepositoryCandidates(this.state, this.rule, this.destination, (repo) => this.listed.has(repo), this.inScope);
    return sharedManifestCheck(this.state, this.rule, this.destination, [...[...this.candidates.values()].flat(), ...vanished]);
  }
}

/**
 * Records in the rule's state what the rule pushed per source tag. Only what this rule pushed itself:
 * a tag found already identical ("present") may predate Ferry, and deleteRemote must never delete what
 * the rule did not put there.
 */
export async function recordPushes(state: RuleState, rule: string, destination: string, results: Iterable<ArtifactResult>): Promise<void> {
  const pushed: PushedTag[] = [];
  for (const result of results) {
    if (result.status !== 'copied' || !result.sourceRepository || !result.destinationRepository) continue;
    const digest = result.destinationDigest ?? result.digest;
    if (!digest) continue;
    for (const tag of result.tags) pushed.push({ sourceRepository: result.sourceRepository, sourceTag: tag, repository: result.destinationRepository, tag, digest });
  }
  if (pushed.length) await state.recordPushed(rule, destination, pushed);
}

/**
 * Deletes the deletion candidates of a complete listing (with deleteRemote, after the run's copies)
 * whose destination tag still holds exactly what this rule pushed; drops them from the state either
 * way once decided.
 */
export async function deleteGoneTags(
  rule: RuleConfig,
  deletions: RulePlan['deletions'],
  state: RuleState,
  destinationKey: string,
  destination: Provider,
  logger: Logger,
): Promise<RuleReport['deleted']> {
  const deleted: RuleReport['deleted'] = [];
  if (!rule.deleteRemote) return deleted;
  for (const d of deletions) {
    try {
      const outcome = await deleteIfOurs(destination, d.repository, d.tag, (digest) =>
        digest === d.digest ? { ours: true } : { ours: false, reason: 'the destination tag changed since Ferry pushed it' },
      );
      if (outcome.status === 'deleted') {
        deleted.push({ repository: d.repository, tag: d.tag });
        logger.info({ rule: rule.name, repository: d.repository, tag: d.tag, digest: d.digest }, 'deleted: gone from the source');
      } else if (outcome.status === 'kept') {
        logger.warn({ rule: rule.name, repository: d.repository, tag: d.tag }, `not deleted: ${outcome.reason}`);
      }
      if (d.sourceRepository && d.sourceTag) await state.forgetPushed(rule.name, destinationKey, d.sourceRepository, d.sourceTag);
    } catch (err) {
      logger.error({ rule: rule.name, repository: d.repository, tag: d.tag, err: (err as Error).message }, 'delete failed');
    }
  }
  return deleted;
}

// ---------------------------------------------------------------------------------------------------
// Deleted at the source (webhook)

/** An artifact Harbor reports deleted at the source. */
export interface DeleteRequest {
  repository: string;
  digest?: string | undefined;
  tag?: string | undefined;
  /** ChartMuseum chart (older Harbor): the destination holds it as an OCI chart under the version tag. */
  chart?: boolean | undefined;
}

export interface DeletionResult {
  source: string;
  destination?: string | undefined;
  digest?: string | undefined;
  status: 'deleted' | 'kept' | 'absent' | 'failed';
  reason?: string | undefined;
}

/** What the webhook path needs of an engine. */
export interface DeletingEngine {
  provider(name: string): Provider;
  plan(rule: RuleConfig, opts: { artifacts: () => { repository: string; digest?: string | undefined; tags: string[]; kind?: 'chart' }[] }): Promise<RulePlan>;
  readonly state: Pick<DestinationState, 'knownManifest'>;
}

/** A rule's finished runs, newest first, with their artifact results (the daemon's history). */
export interface PushHistory {
  withItems(rule: string): AsyncIterable<{ items: ArtifactResult[] }>;
}

export async function deleteAtDestination(
  engine: DeletingEngine,
  rule: RuleConfig,
  requests: DeleteRequest[],
  history: PushHistory,
  logger: Logger,
  signal?: AbortSignal,
): Promise<DeletionResult[]> {
  const results: DeletionResult[] = [];
  const destination = engine.provider(rule.destination);
  const key = registryKey(rule.destination, destination.config);
  for (const req of requests) {
    if (signal?.aborted) break;
    const source = `${rule.source}/${req.repository}${req.tag ? `:${req.tag}` : ''}${req.digest ? `@${req.digest}` : ''}`;
    try {
      const live = await stillAtSource(engine, rule, req);
      if (live) {
        results.push({ source, digest: req.digest, status: 'kept', reason: live });
        continue;
      }
      const plan = await engine.plan(rule, { artifacts: () => [{ repository: req.repository, digest: req.digest, tags: req.tag ? [req.tag] : [], ...(req.chart ? { kind: 'chart' as const } : {}) }] });
      if (!plan.items.length) {
        results.push({ source, digest: req.digest, status: 'kept', reason: "not selected by the rule's filters" });
        continue;
      }
      for (const item of plan.items) {
        const refs = item.tags.length ? item.tags : req.digest ? [req.digest] : [];
        for (const ref of refs) {
          const target = `${rule.destination}/${item.destinationRepository}${DIGEST.test(ref) ? '@' : ':'}${ref}`;
          const outcome = await deleteIfOurs(destination, item.destinationRepository, ref, async (found) => {
            if (!(await expectedDigests(history, rule, req, found)).has(found)) return { ours: false, reason: `the destination holds ${found}, not the deleted artifact` };
            if (!(await engine.state.knownManifest(key, item.destinationRepository, found))) return { ours: false, reason: 'Ferry has no record of pushing it (not deleting what it did not put there)' };
            return { ours: true };
          });
          if (outcome.status === 'deleted') logger.info({ rule: rule.name, source, destination: target, digest: outcome.digest }, 'deleted at the destination (deleted at the source)');
          results.push({ source, destination: target, ...(outcome.digest ? { digest: outcome.digest } : {}), status: outcome.status, ...(outcome.reason ? { reason: outcome.reason } : {}) });
        }
      }
    } catch (err) {
      logger.error({ rule: rule.name, source, err: (err as Error).message }, 'deletion at the destination failed');
      results.push({ source, digest: req.digest, status: 'failed', reason: (err as Error).message });
    }
  }
  return results;
}

/**
 * Why the source contradicts the deletion (it still serves the digest, or the tag), or undefined when it
 * answers 404. ChartMuseum charts live outside the registry API and are not checked here.
 */
async function stillAtSource(engine: DeletingEngine, rule: RuleConfig, req: DeleteRequest): Promise<string | undefined> {
  if (req.chart) return undefined;
  const reference = req.digest ?? req.tag;
  if (!reference) return undefined;
  const found = await engine.provider(rule.source).client.headManifest(req.repository, reference);
  if (!found) return undefined;
  return req.digest
    ? `the source still has ${req.repository}@${req.digest} (a late or replayed delete event): not deleting a live replica`
    : `the source still has ${req.repository}:${req.tag} (now ${found.digest}): not deleting a live replica`;
}

/**
 * Digests the deleted source artifact may have at the destination: its own, and what this rule's
 * history says it became. The history is read only when the destination digest differs from the
 * source's (a rewritten manifest) or the event carried no digest (ChartMuseum charts).
 */
async function expectedDigests(history: PushHistory, rule: RuleConfig, req: DeleteRequest, found: string): Promise<Set<string>> {
  const digests = new Set<string>(req.digest ? [req.digest] : []);
  if (digests.has(found)) return digests;
  const tagged = req.tag ? `${rule.source}/${req.repository}:${req.tag}` : undefined;
  for await (const e of history.withItems(rule.name)) {
    for (const item of e.items) {
      const same = req.digest ? item.digest === req.digest : tagged !== undefined && item.source === tagged;
      if (!same || (item.status !== 'copied' && item.status !== 'present')) continue;
      const d = item.destinationDigest ?? item.digest;
      if (d) digests.add(d);
    }
    if (digests.has(found)) break;
  }
  return digests;
}

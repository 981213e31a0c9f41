// Builds a rule's work from the source listing: filters, destination names, the destination
// product's name rules, collisions. Problems are per source repository and never stop the others;
// only a rule whose filters or rename rules cannot be compiled fails as a whole (FilterError /
// MappingError thrown from here).
//
// The planner streams: it reads the listing one repository at a time (a listing yields a
// repository's artifacts together) and hands out that repository's plan before reading the next, so
// memory holds one repository, never the catalog. What needs more than one repository:
//   - `latest N` and semver filters need only the repository's own tags: applied per repository;
//   - collisions (two source repositories mapped to one destination) can only happen when flatten or
//     rename can make two names one. Then the engine first lists repository NAMES only (no tags) and
//     passes the destinations claimed by more than one source (`collisions`); the planner holds back
//     just those repositories until each candidate has been seen, so that, as before, two that both
//     have something to copy are both reported and neither is copied, and one whose filters leave it
//     empty does not block the other. The names pass keeps one entry per repository (not per tag)
//     and only while it runs; what stays is the (small) set of colliding names.
import type { RuleConfig } from '../config/schema.js';
import { compileFilters, newestTags, type CompiledFilters } from './filters.js';
import { MappingError, createMapper } from './mapping.js';
import { orderOldestFirst } from './order.js';
import type { PlanProblem, RulePlan, SourceArtifact, WorkItem } from './types.js';

export interface PlanOptions {
  sourceRegistry: string;
  destinationRegistry: string;
  /**
   * Product name rules of the destination (depth, charset, length): the reason a name cannot be used
   * (e.g. SWR's "organization/name only — use flatten: all"), else undefined.
   */
  validateDestination?: ((repository: string) => string | undefined) | undefined;
}

/** The part of a rule the plan reads. */
export type PlanRule = Pick<RuleConfig, 'name' | 'filters' | 'destinationNamespace' | 'flatten' | 'rename'> & Partial<Pick<RuleConfig, 'source'>>;

/** One source repository's share of a rule's plan. */
export interface RepositoryPlan {
  sourceRepository: string;
  /** Undefined when the repository could not be mapped (its problem says why). */
  destinationRepository?: string | undefined;
  items: WorkItem[];
  problems: PlanProblem[];
  /** Every tag the listing gave for this repository (selected or not). */
  listedTags: Set<string>;
  /**
   * The listing could not read the repositories its problems name (refused, failed): deleteRemote
   * judges none of their tags gone.
   */
  unreadable?: true | undefined;
}

interface Selected {
  artifact: SourceArtifact;
  tags: string[];
}

interface Group {
  repository: string;
  selected: Selected[];
  /** digest → index in `selected`, to merge an artifact listed twice. */
  byDigest: Map<string, number>;
  listedTags: Set<string>;
  withoutLabels: boolean;
}

/** True when no two source names can map to one destination name (no flatten that drops levels, no rename). */
export function mappingIsInjective(rule: Pick<PlanRule, 'destinationNamespace' | 'flatten' | 'rename'>): boolean {
  if (rule.rename?.length) return false;
  if (rule.flatten === 'none') return true;
  const ns = (rule.destinationNamespace ?? '').replace(/^\/+|\/+$/g, '');
  return !ns && rule.flatten !== 'all';
}

/**
 * The destinations more than one of `repositories` maps to (→ those source names). Holds one entry per
 * repository while it runs (names only), returns only the colliding ones.
 */
export async function findCollisions(rule: PlanRule, repositories: AsyncIterable<string> | Iterable<string>): Promise<Map<string, string[]>> {
  const map = createMapper(rule);
  const owner = new Map<string, string>();
  const collisions = new Map<string, string[]>();
  for await (const repo of repositories) {
    let destination: string;
    try {
      destination = map(repo);
    } catch (err) {
      if (err instanceof MappingError) continue; // reported per repository by the planner
      throw err;
    }
    const first = owner.get(destination);
    if (first === undefined) owner.set(destination, repo);
    else if (first !== repo) {
      const list = collisions.get(destination) ?? [first];
      if (!list.includes(repo)) list.push(repo);
      collisions.set(destination, list);
    }
  }
  return collisions;
}

function collisionMessage(destination: string, repos: string[]): string {
  const names = [...repos].sort().map((r) => `"${r}"`);
  const list = names.length === 2 ? names.join(' and ') : `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
  return `${list} ${names.length === 2 ? 'both' : 'all'} map to "${destination}"; change destinationNamespace or flatten, or add a rename`;
}

export class RulePlanner {
  private readonly filters: CompiledFilters;
  private readonly map: (repository: string) => string;
  private withoutLabels = 0;
  /** Colliding destination → its candidate sources not seen yet, and the plans held back meanwhile. */
  private readonly held = new Map<string, { waiting: Set<string>; plans: RepositoryPlan[] }>();

  constructor(
    private readonly rule: PlanRule,
    private readonly opts: PlanOptions & { collisions?: ReadonlyMap<string, readonly string[]> | undefined },
  ) {
    this.filters = compileFilters(rule.filters);
    this.map = createMapper(rule);
    for (const [destination, repos] of opts.collisions ?? []) this.held.set(destination, { waiting: new Set(repos), plans: [] });
  }

  /**
   * The plan, one repository at a time. Expects a repository's artifacts together (as every listing
   * yields them); a repository that comes back later is planned again as a new group.
   */
  async *repositories(artifacts: AsyncIterable<SourceArtifact> | Iterable<SourceArtifact>): AsyncGenerator<RepositoryPlan> {
    let group: Group | undefined;
    for await (const artifact of artifacts) {
      const repo = artifact.repository;
      if (!this.filters.repositoryMatches(repo)) continue;
      if (group && group.repository !== repo) {
        yield* this.finish(group);
        group = undefined;
      }
      group ??= { repository: repo, selected: [], byDigest: new Map(), listedTags: new Set(), withoutLabels: false };
      this.add(group, artifact);
    }
    if (group) yield* this.finish(group);
    // Candidates of a collision that never showed up (filtered out, deleted meanwhile): release the rest.
    for (const [destination, h] of this.held) {
      this.held.delete(destination);
      yield* this.resolve(destination, h.plans);
    }
  }

  /** Problems about the rule as a whole, known once the listing is done. */
  ruleProblems(): PlanProblem[] {
    if (!this.withoutLabels) return [];
    const n = this.withoutLabels;
    return [
      {
        rule: this.rule.name,
        sourceRepository: '*',
        message: `filters.labels needs a source that reports labels (a Harbor registry)${this.rule.source ? `; ${this.rule.source}` : '; the source'} listed ${n} repositor${n === 1 ? 'y' : 'ies'} without labels and nothing was selected from ${n === 1 ? 'it' : 'them'}`,
      },
    ];
  }

  private add(group: Group, artifact: SourceArtifact): void {
    for (const tag of artifact.tags) group.listedTags.add(tag);
    const selection = this.filters.selectArtifact(artifact);
    if (!selection.keep) {
      if (selection.code === 'labels-unknown' && !group.withoutLabels) {
        group.withoutLabels = true;
        this.withoutLabels++;
      }
      return;
    }
    const seen = artifact.digest !== undefined ? group.byDigest.get(artifact.digest) : undefined;
    if (seen !== undefined) {
      // The same manifest listed twice (e.g. given artifacts of several webhook events): one copy, all tags.
      const prior = group.selected[seen]!;
      prior.tags = [...new Set([...prior.tags, ...selection.tags])];
      prior.artifact = { ...prior.artifact, tags: [...new Set([...prior.artifact.tags, ...artifact.tags])] };
      return;
    }
    if (artifact.digest !== undefined) group.byDigest.set(artifact.digest, group.selected.length);
    group.selected.push({ artifact, tags: selection.tags });
  }

  private problem(sourceRepository: string, message: string, destinationRepository?: string): PlanProblem {
    return { rule: this.rule.name, sourceRepository, ...(destinationRepository !== undefined ? { destinationRepository } : {}), message };
  }

  private *finish(group: Group): Generator<RepositoryPlan> {
    const repo = group.repository;
    const plan: RepositoryPlan = { sourceRepository: repo, items: [], problems: [], listedTags: group.listedTags };
    if (group.selected.length === 0) {
      yield* this.release(repo, undefined, plan);
      return;
    }
    let destination: string;
    try {
      destination = this.map(repo);
    } catch (err) {
      if (!(err instanceof MappingError)) throw err;
      plan.problems.push(this.problem(repo, err.message));
      yield* this.release(repo, undefined, plan);
      return;
    }
    let invalid: string | undefined;
    try {
      invalid = this.opts.validateDestination?.(destination);
    } catch (err) {
      invalid = (err as Error).message;
    }
    if (invalid) {
      plan.problems.push(this.problem(repo, invalid, destination));
      yield* this.release(repo, undefined, plan);
      return;
    }
    plan.destinationRepository = destination;
    plan.items = this.items(group, destination);
    yield* this.release(repo, destination, plan);
  }

  /** Yields the plan unless a collision candidate holds it back; yields what a completed collision releases. */
  private *release(repo: string, destination: string | undefined, plan: RepositoryPlan): Generator<RepositoryPlan> {
    // A repository with nothing selected still counts as "seen" for every collision naming it.
    for (const [dest, h] of this.held) {
      if (!h.waiting.has(repo)) continue;
      h.waiting.delete(repo);
      if (dest === destination && plan.items.length) h.plans.push(plan);
      if (h.waiting.size === 0) {
        this.held.delete(dest);
        yield* this.resolve(dest, h.plans);
      }
      if (dest === destination && plan.items.length) return;
    }
    yield plan;
  }

  private *resolve(destination: string, plans: RepositoryPlan[]): Generator<RepositoryPlan> {
    if (plans.length < 2) {
      yield* plans;
      return;
    }
    const message = collisionMessage(destination, plans.map((p) => p.sourceRepository));
    for (const p of plans) yield { ...p, items: [], problems: [...p.problems, this.problem(p.sourceRepository, message, destination)] };
  }

  private items(group: Group, destination: string): WorkItem[] {
    let selected = group.selected;
    const latest = this.filters.latest;
    if (latest !== undefined) {
      // Over the tags that passed every other filter, per repository; untagged artifacts (kept only
      // with filters.untagged) have no tag to count and stay.
      const keep = newestTags(
        selected.flatMap(({ artifact, tags }) => tags.map((tag) => ({ tag, pushedAt: artifact.tagPushedAt?.[tag] ?? artifact.pushedAt }))),
        latest,
      );
      selected = selected.map((s) => ({ ...s, tags: s.tags.filter((t) => keep.has(t)) })).filter((s) => s.tags.length > 0 || s.artifact.tags.length === 0);
    }
    const items: WorkItem[] = [];
    // Oldest first by the source's push time (src/plan/order.ts), so destination push times keep the source's order.
    for (const { artifact, tags } of orderOldestFirst(selected, (s) => s.artifact)) {
      const reference = artifact.digest ?? tags[0];
      if (reference === undefined) continue; // untagged without digest: filtered already, kept for the type checker
      items.push({
        rule: this.rule.name,
        sourceRegistry: this.opts.sourceRegistry,
        destinationRegistry: this.opts.destinationRegistry,
        sourceRepository: group.repository,
        destinationRepository: destination,
        sourceReference: reference,
        tags,
        ...(artifact.digest !== undefined ? { digest: artifact.digest } : {}),
        ...(artifact.kind ? { kind: artifact.kind } : {}),
        ...(artifact.size !== undefined ? { size: artifact.size } : {}),
        ...(artifact.mediaType !== undefined ? { mediaType: artifact.mediaType } : {}),
        ...(artifact.referrers !== undefined ? { referrers: artifact.referrers } : {}),
        ...(artifact.chartMuseum ? { chartMuseum: artifact.chartMuseum } : {}),
      });
    }
    return items;
  }
}

/** Groups artifacts by repository, keeping the order in which repositories first appear. */
export function groupByRepository(artifacts: SourceArtifact[]): SourceArtifact[] {
  const groups = new Map<string, SourceArtifact[]>();
  for (const a of artifacts) {
    const list = groups.get(a.repository);
    if (list) list.push(a);
    else groups.set(a.repository, [a]);
  }
  return [...groups.values()].flat();
}

/**
 * The whole plan of a rule at once, for small inputs (webhook events, tests, `deleteRemote` checks):
 * the same planner, over the artifacts collected and grouped by repository.
 */
export async function buildRulePlan(
  rule: PlanRule,
  artifacts: AsyncIterable<SourceArtifact> | Iterable<SourceArtifact>,
  opts: PlanOptions,
): Promise<RulePlan> {
  const filters = compileFilters(rule.filters);
  createMapper(rule); // throws MappingError for a bad rename before anything is read
  const all: SourceArtifact[] = [];
  for await (const a of artifacts) all.push(a);
  const grouped = groupByRepository(all);
  const collisions = mappingIsInjective(rule)
    ? undefined
    : await findCollisions(rule, new Set(grouped.filter((a) => filters.repositoryMatches(a.repository) && filters.selectArtifact(a).keep).map((a) => a.repository)));
  const planner = new RulePlanner(rule, { ...opts, collisions });
  const items: WorkItem[] = [];
  const problems: PlanProblem[] = [];
  for await (const p of planner.repositories(grouped)) {
    items.push(...p.items);
    problems.push(...p.problems);
  }
  return { rule: rule.name, items, problems: [...problems, ...planner.ruleProblems()], deletions: [] };
}

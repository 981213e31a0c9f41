// Builds a rule's work list from the source listing: filters, destination names, the destination
// product's name rules, collisions. Problems are per source repository and never stop the others;
// only a rule whose filters or rename rules cannot be compiled fails as a whole (FilterError /
// MappingError thrown from here).
import type { RuleConfig } from '../config/schema.js';
import { compileFilters, newestTags } from './filters.js';
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

interface Selected {
  artifact: SourceArtifact;
  tags: string[];
}

interface RepositoryEntry {
  destination: string;
  selected: Selected[];
  /** digest → index in `selected`, to merge an artifact listed twice. */
  byDigest: Map<string, number>;
}

export async function buildRulePlan(
  rule: PlanRule,
  artifacts: AsyncIterable<SourceArtifact> | Iterable<SourceArtifact>,
  opts: PlanOptions,
): Promise<RulePlan> {
  const filters = compileFilters(rule.filters);
  const map = createMapper(rule);
  const problems: PlanProblem[] = [];
  const repositories = new Map<string, RepositoryEntry>();
  const failed = new Set<string>();
  const withoutLabels = new Set<string>();
  const problem = (sourceRepository: string, message: string, destinationRepository?: string) =>
    problems.push({ rule: rule.name, sourceRepository, ...(destinationRepository !== undefined ? { destinationRepository } : {}), message });

  for await (const artifact of artifacts) {
    const repo = artifact.repository;
    if (failed.has(repo) || !filters.repositoryMatches(repo)) continue;
    const selection = filters.selectArtifact(artifact);
    if (!selection.keep) {
      if (selection.code === 'labels-unknown') withoutLabels.add(repo);
      continue;
    }
    let entry = repositories.get(repo);
    if (!entry) {
      let destination: string;
      try {
        destination = map(repo);
      } catch (err) {
        if (!(err instanceof MappingError)) throw err;
        problem(repo, err.message);
        failed.add(repo);
        continue;
      }
      let invalid: string | undefined;
      try {
        invalid = opts.validateDestination?.(destination);
      } catch (err) {
        invalid = (err as Error).message;
      }
      if (invalid) {
        problem(repo, invalid, destination);
        failed.add(repo);
        continue;
      }
      entry = { destination, selected: [], byDigest: new Map() };
      repositories.set(repo, entry);
    }
    const seen = artifact.digest !== undefined ? entry.byDigest.get(artifact.digest) : undefined;
    if (seen !== undefined) {
      // The same manifest listed twice (e.g. given artifacts of several webhook events): one copy, all tags.
      const prior = entry.selected[seen]!;
      prior.tags = [...new Set([...prior.tags, ...selection.tags])];
      prior.artifact = { ...prior.artifact, tags: [...new Set([...prior.artifact.tags, ...artifact.tags])] };
      continue;
    }
    if (artifact.digest !== undefined) entry.byDigest.set(artifact.digest, entry.selected.length);
    entry.selected.push({ artifact, tags: selection.tags });
  }

  if (withoutLabels.size) {
    problems.push({
      rule: rule.name,
      sourceRepository: '*',
      message: `filters.labels needs a source that reports labels (a Harbor registry)${rule.source ? `; ${rule.source}` : '; the source'} listed ${withoutLabels.size} repositor${withoutLabels.size === 1 ? 'y' : 'ies'} without labels and nothing was selected from ${withoutLabels.size === 1 ? 'it' : 'them'}`,
    });
  }

  // Two source repositories must never write into one destination repository: their tags would
  // overwrite each other. Both are reported and neither is copied.
  const owners = new Map<string, string[]>();
  for (const [repo, entry] of repositories) owners.set(entry.destination, [...(owners.get(entry.destination) ?? []), repo]);
  for (const [destination, repos] of owners) {
    if (repos.length < 2) continue;
    const names = [...repos].sort().map((r) => `"${r}"`);
    const list = names.length === 2 ? names.join(' and ') : `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
    for (const repo of repos) {
      problem(repo, `${list} ${names.length === 2 ? 'both' : 'all'} map to "${destination}"; change destinationNamespace or flatten, or add a rename`, destination);
      repositories.delete(repo);
    }
  }

  const items: WorkItem[] = [];
  for (const [repo, entry] of repositories) {
    let selected = entry.selected;
    if (filters.latest !== undefined) {
      // Over the tags that passed every other filter, per repository; untagged artifacts (kept only
      // with filters.untagged) have no tag to count and stay.
      const keep = newestTags(
        selected.flatMap(({ artifact, tags }) => tags.map((tag) => ({ tag, pushedAt: artifact.tagPushedAt?.[tag] ?? artifact.pushedAt }))),
        filters.latest,
      );
      selected = selected
        .map((s) => ({ ...s, tags: s.tags.filter((t) => keep.has(t)) }))
        .filter((s) => s.tags.length > 0 || s.artifact.tags.length === 0);
    }
    // Oldest first by the source's push time (src/plan/order.ts), so destination push times keep the source's order.
    for (const { artifact, tags } of orderOldestFirst(selected, (s) => s.artifact)) {
      const reference = artifact.digest ?? tags[0];
      if (reference === undefined) continue; // untagged without digest: filtered already, kept for the type checker
      items.push({
        rule: rule.name,
        sourceRegistry: opts.sourceRegistry,
        destinationRegistry: opts.destinationRegistry,
        sourceRepository: repo,
        destinationRepository: entry.destination,
        sourceReference: reference,
        tags,
        ...(artifact.digest !== undefined ? { digest: artifact.digest } : {}),
        ...(artifact.kind ? { kind: artifact.kind } : {}),
        ...(artifact.chartMuseum ? { chartMuseum: artifact.chartMuseum } : {}),
      });
    }
  }
  return { rule: rule.name, items, problems, deletions: [] };
}

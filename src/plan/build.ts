// Builds a rule's work list from the source listing: filters, destination names, name rules of the
// destination product, collisions. Problems are per repository and never stop the others.
import type { RuleConfig } from '../config/schema.js';
import { compileFilters, newestTags } from './filters.js';
import { MappingError, compileRename, mapRepository } from './mapping.js';
import type { PlanProblem, RulePlan, SourceArtifact, WorkItem } from './types.js';

export interface PlanOptions {
  sourceRegistry: string;
  destinationRegistry: string;
  /** Product name rules (depth, charset); returns the reason a name cannot be used. */
  validateDestination?: ((repository: string) => string | undefined) | undefined;
}

export async function buildRulePlan(
  rule: RuleConfig,
  artifacts: AsyncIterable<SourceArtifact> | Iterable<SourceArtifact>,
  opts: PlanOptions,
): Promise<RulePlan> {
  const filters = compileFilters(rule.filters);
  const rename = compileRename(rule.rename);
  const problems: PlanProblem[] = [];
  const byRepository = new Map<string, { destination: string; artifacts: { artifact: SourceArtifact; tags: string[] }[] }>();
  const failedRepositories = new Set<string>();

  for await (const artifact of artifacts) {
    const repo = artifact.repository;
    if (failedRepositories.has(repo) || !filters.repositoryMatches(repo)) continue;
    const selection = filters.selectArtifact(artifact);
    if (!selection.keep) continue;
    let entry = byRepository.get(repo);
    if (!entry) {
      let destination: string;
      try {
        destination = mapRepository(repo, rule, rename);
      } catch (err) {
        if (!(err instanceof MappingError)) throw err;
        problems.push({ rule: rule.name, sourceRepository: repo, message: err.message });
        failedRepositories.add(repo);
        continue;
      }
      const invalid = opts.validateDestination?.(destination);
      if (invalid) {
        problems.push({ rule: rule.name, sourceRepository: repo, destinationRepository: destination, message: invalid });
        failedRepositories.add(repo);
        continue;
      }
      byRepository.set(repo, (entry = { destination, artifacts: [] }));
    }
    entry.artifacts.push({ artifact, tags: selection.tags });
  }

  // Two source repositories must never write into one destination repository.
  const owners = new Map<string, string[]>();
  for (const [repo, entry] of byRepository) owners.set(entry.destination, [...(owners.get(entry.destination) ?? []), repo]);
  for (const [destination, repos] of owners) {
    if (repos.length < 2) continue;
    for (const repo of repos) {
      problems.push({
        rule: rule.name,
        sourceRepository: repo,
        destinationRepository: destination,
        message: `${repos.map((r) => `"${r}"`).join(' and ')} both map to "${destination}"; change flatten, destinationNamespace or add a rename`,
      });
      byRepository.delete(repo);
    }
  }

  const items: WorkItem[] = [];
  for (const [repo, entry] of byRepository) {
    let selected = entry.artifacts;
    if (filters.latest !== undefined) {
      const keep = newestTags(
        selected.flatMap(({ artifact, tags }) => tags.map((tag) => ({ tag, pushedAt: artifact.tagPushedAt?.[tag] ?? artifact.pushedAt }))),
        filters.latest,
      );
      selected = selected.map((s) => ({ ...s, tags: s.tags.filter((t) => keep.has(t)) })).filter((s) => s.tags.length > 0 || s.artifact.tags.length === 0);
    }
    for (const { artifact, tags } of selected) {
      items.push({
        rule: rule.name,
        sourceRegistry: opts.sourceRegistry,
        destinationRegistry: opts.destinationRegistry,
        sourceRepository: repo,
        destinationRepository: entry.destination,
        sourceReference: artifact.digest ?? tags[0]!,
        tags,
        ...(artifact.digest ? { digest: artifact.digest } : {}),
        ...(artifact.kind ? { kind: artifact.kind } : {}),
        ...(artifact.chartMuseum ? { chartMuseum: artifact.chartMuseum } : {}),
      });
    }
  }
  return { rule: rule.name, items, problems, deletions: [] };
}

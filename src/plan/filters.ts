// A rule's filters, with the meaning Harbor gives them: doublestar globs over the full source
// repository path and over each tag (`*` stops at `/`, `**` crosses it, `{a,b}`, `?`, `[…]`), labels
// that must all be present, kinds by config media type — plus what migrations need and Harbor lacks:
// a tag regex, a semver range and "the newest N tags".
import picomatch from 'picomatch';
import semver from 'semver';
import type { ArtifactKind, FiltersConfig } from '../config/schema.js';
import type { SourceArtifact } from './types.js';

export interface Selection {
  keep: boolean;
  /** The tags of the artifact that passed every tag filter (only these are pushed). */
  tags: string[];
  /** Why the artifact was dropped. */
  reason?: string;
}

export interface CompiledFilters {
  repositoryMatches(repository: string): boolean;
  /** Tag filters (globs, regex, semver); `latest` is applied per repository by the plan. */
  tagMatches(tag: string): boolean;
  kindAllowed(kind: ArtifactKind): boolean;
  selectArtifact(artifact: SourceArtifact): Selection;
  /** filters.latest, or undefined. */
  latest: number | undefined;
}

function globs(patterns: string[] | undefined): ((s: string) => boolean) | undefined {
  if (!patterns?.length) return undefined;
  // dot: Harbor's doublestar matches dot-files; no special meaning for a leading '.' in tags either.
  const matchers = patterns.map((p) => picomatch(p, { dot: true }));
  return (s) => matchers.some((m) => m(s));
}

/** A tag as semver: "1.2.3", "v1.2.3", "1.2.3-rc.1"; undefined when it is not one. */
export function tagSemver(tag: string): semver.SemVer | undefined {
  return semver.parse(tag.replace(/^v(?=\d)/, '')) ?? undefined;
}

export function compileFilters(filters: FiltersConfig): CompiledFilters {
  const include = globs(filters.repositories);
  const exclude = globs(filters.excludeRepositories);
  const tagInclude = globs(filters.tags);
  const tagExclude = globs(filters.excludeTags);
  const tagRegex = filters.tagRegex ? new RegExp(filters.tagRegex) : undefined;
  const range = filters.semver ? new semver.Range(filters.semver) : undefined;
  const labels = filters.labels ?? [];
  const kinds = filters.kinds;

  const tagMatches = (tag: string): boolean => {
    if (tagInclude && !tagInclude(tag)) return false;
    if (tagExclude?.(tag)) return false;
    if (tagRegex && !tagRegex.test(tag)) return false;
    if (range) {
      const v = tagSemver(tag);
      if (!v || !range.test(v)) return false;
    }
    return true;
  };
  const anyTagFilter = !!(tagInclude || tagExclude || tagRegex || range);

  return {
    latest: filters.latest,
    repositoryMatches: (repo) => (!include || include(repo)) && !exclude?.(repo),
    tagMatches,
    kindAllowed: (kind) => !kinds?.length || kinds.includes(kind),
    selectArtifact(artifact) {
      if (artifact.kind && kinds?.length && !kinds.includes(artifact.kind)) {
        return { keep: false, tags: [], reason: `kind ${artifact.kind} not selected` };
      }
      if (labels.length) {
        const have = new Set(artifact.labels ?? []);
        const missing = labels.filter((l) => !have.has(l));
        if (missing.length) return { keep: false, tags: [], reason: `missing label(s) ${missing.join(', ')}` };
      }
      if (artifact.tags.length === 0) {
        // Untagged artifacts have nothing for a tag filter to match: kept only on request, by digest.
        return filters.untagged && artifact.digest ? { keep: true, tags: [] } : { keep: false, tags: [], reason: 'untagged (filters.untagged is off)' };
      }
      const tags = anyTagFilter ? artifact.tags.filter(tagMatches) : [...artifact.tags];
      return tags.length ? { keep: true, tags } : { keep: false, tags: [], reason: 'no tag matches the tag filters' };
    },
  };
}

/**
 * Keeps the newest `n` tags of one repository: by push time where the source knows it (Harbor),
 * otherwise by semver (highest first), otherwise by name (lexically last first).
 */
export function newestTags(tags: { tag: string; pushedAt?: Date | undefined }[], n: number): Set<string> {
  const sorted = [...tags].sort((a, b) => {
    const ta = a.pushedAt?.getTime();
    const tb = b.pushedAt?.getTime();
    if (ta !== undefined && tb !== undefined && ta !== tb) return tb - ta;
    if (ta !== undefined && tb === undefined) return -1;
    if (tb !== undefined && ta === undefined) return 1;
    const va = tagSemver(a.tag);
    const vb = tagSemver(b.tag);
    if (va && vb) return semver.rcompare(va, vb);
    if (va) return -1;
    if (vb) return 1;
    return b.tag.localeCompare(a.tag);
  });
  return new Set(sorted.slice(0, n).map((t) => t.tag));
}

// A rule's filters with the meaning Harbor's replication gives them, compiled once per rule.
//
// The glob syntax (doublestar v1, as Harbor) is compiled in config/filter-syntax.ts.
//
// Tag filters and untagged artifacts, as Harbor's artifactTagFilter has it: every tag of an artifact is
// matched, only the matching tags are copied, and the artifact is dropped when none matches. An untagged
// artifact is matched as the empty tag "": with no tag filter, or with `**` / `*`, Harbor copies it,
// with `v*` it does not, with an exclude filter it does unless the exclude matches "". Ferry keeps that
// meaning under `filters.untagged: true`; without it (the default) untagged artifacts are never copied,
// which is the one deliberate difference from Harbor (whose default copies them).
import semver from 'semver';
import type { ArtifactKind, FiltersConfig } from '../config/schema.js';
import { FilterError, type Matcher, doublestarMatcher, filterErrors, splitUnescaped } from '../config/filter-syntax.js';
import type { SourceArtifact } from './types.js';

export { FilterError, doublestarMatcher, filterErrors } from '../config/filter-syntax.js';

export type SelectionCode = 'kind' | 'labels' | 'labels-unknown' | 'untagged' | 'tags';

export interface Selection {
  keep: boolean;
  /** The tags of the artifact that passed every tag filter (only these are pushed); [] for a kept untagged artifact. */
  tags: string[];
  /** Why the artifact was dropped. */
  reason?: string;
  /** Which filter dropped it. */
  code?: SelectionCode;
}

export interface CompiledFilters {
  /** filters.repositories / excludeRepositories on the full source repository path. */
  repositoryMatches(repository: string): boolean;
  /** Every tag filter (tags, excludeTags, tagRegex, semver) on one tag; `latest` is per repository (see build.ts). */
  tagMatches(tag: string): boolean;
  /** filters.kinds; for the transfer stage when the listing did not know the kind. */
  kindAllowed(kind: ArtifactKind): boolean;
  /** Repository-independent decision on one artifact: kind (when known), labels, untagged, tags. */
  selectArtifact(artifact: SourceArtifact): Selection;
  /** filters.latest, or undefined. */
  latest: number | undefined;
  /**
   * The projects (first path components) every selected repository lies in, when the repository
   * filters pin them down (each include pattern starts with a literal or `{a,b}` component, like
   * Harbor's IsSpecificPath); undefined when any project may match. Lets a Harbor listing skip the
   * project list.
   */
  projects: string[] | undefined;
}

/** Any of the patterns; undefined when there are none (no filter). */
function anyOf(patterns: string[] | undefined): Matcher | undefined {
  if (!patterns?.length) return undefined;
  const matchers = patterns.map(doublestarMatcher);
  return (s) => matchers.some((m) => m(s));
}

/** The literal first components an include pattern pins down, like Harbor's IsSpecificPathComponent. */
function specificFirstComponent(pattern: string): string[] | undefined {
  if (pattern === '' || pattern.startsWith('regex:')) return undefined;
  const first = splitUnescaped(pattern, '/')[0]!;
  if (!first || /[*?[\]\\^]/.test(first)) return undefined;
  if (!/[{},]/.test(first)) return [first];
  const open = first.indexOf('{');
  const close = first.lastIndexOf('}');
  if (open === -1 || close < open || first.indexOf('{', open + 1) !== -1) return undefined;
  return first
    .slice(open + 1, close)
    .split(',')
    .map((o) => first.slice(0, open) + o + first.slice(close + 1));
}

// ---------------------------------------------------------------------------------------------------
// semver

/**
 * A tag as semver: "1.2.3", "v1.2.3", "1.2.3-rc.1"; a single "_" stands for "+" (build metadata), as
 * Helm writes chart versions into OCI tags. Undefined when the tag is not a full semver version.
 */
export function tagSemver(tag: string): semver.SemVer | undefined {
  let v = tag.startsWith('v') ? tag.slice(1) : tag;
  if (v.split('_').length === 2) v = v.replace('_', '+');
  return semver.parse(v) ?? undefined;
}

// ---------------------------------------------------------------------------------------------------


/** Compiles a rule's filters; throws FilterError when a pattern, regex or range is invalid. */
export function compileFilters(filters: FiltersConfig): CompiledFilters {
  const errors = filterErrors(filters);
  if (errors.length) throw new FilterError(errors.join('; '));

  const include = anyOf(filters.repositories);
  const exclude = anyOf(filters.excludeRepositories);
  const tagInclude = anyOf(filters.tags);
  const tagExclude = anyOf(filters.excludeTags);
  // Unanchored like Harbor's regex filters: write ^…$ to match whole tags.
  const tagRegex = filters.tagRegex !== undefined ? new RegExp(filters.tagRegex) : undefined;
  // npm semantics: prereleases match only ranges that name a prerelease of the same version.
  const range = filters.semver !== undefined ? new semver.Range(filters.semver) : undefined;
  const labels = filters.labels ?? [];
  const kinds = filters.kinds?.length ? filters.kinds : undefined;

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

  let projects: string[] | undefined;
  if (filters.repositories?.length) {
    const firsts = filters.repositories.map(specificFirstComponent);
    if (firsts.every((f) => f !== undefined)) projects = [...new Set(firsts.flat() as string[])].sort();
  }

  return {
    latest: filters.latest,
    projects,
    repositoryMatches: (repo) => (!include || include(repo)) && !exclude?.(repo),
    tagMatches,
    kindAllowed: (kind) => !kinds || kinds.includes(kind),
    selectArtifact(artifact) {
      if (artifact.kind && kinds && !kinds.includes(artifact.kind)) {
        return { keep: false, tags: [], code: 'kind', reason: `kind ${artifact.kind} is not in filters.kinds (${kinds.join(', ')})` };
      }
      if (labels.length) {
        if (!artifact.labels) {
          return { keep: false, tags: [], code: 'labels-unknown', reason: 'the source does not report labels (filters.labels needs a Harbor source)' };
        }
        const have = new Set(artifact.labels);
        const missing = labels.filter((l) => !have.has(l));
        if (missing.length) return { keep: false, tags: [], code: 'labels', reason: `missing label(s) ${missing.join(', ')}` };
      }
      if (artifact.tags.length === 0) {
        if (!filters.untagged) return { keep: false, tags: [], code: 'untagged', reason: 'untagged (filters.untagged is off)' };
        if (!artifact.digest) return { keep: false, tags: [], code: 'untagged', reason: 'untagged and the listing gave no digest to copy it by' };
        // Harbor matches an untagged artifact's tag filters against the empty tag.
        return tagMatches('') ? { keep: true, tags: [] } : { keep: false, tags: [], code: 'tags', reason: 'untagged, and the tag filters do not match an empty tag (as in Harbor)' };
      }
      const tags = artifact.tags.filter(tagMatches);
      return tags.length ? { keep: true, tags } : { keep: false, tags: [], code: 'tags', reason: 'no tag matches the tag filters' };
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// latest: N

export interface DatedTag {
  tag: string;
  /** Push time of the tag (Harbor tag push_time, else the artifact's push_time); undefined when unknown. */
  pushedAt?: Date | undefined;
}

/**
 * "Newest first" order for `filters.latest`. Tags with a known push time come first, newest first;
 * then (ties and tags without a time) tags that parse as semver, highest first (see tagSemver); then
 * the rest by name, lexically last first (plain code-unit order, no locale). So a source that knows
 * push times (Harbor) is ordered by time, a plain registry (tags/list only) by version, and names that
 * are neither times nor versions by name.
 */
export function compareNewest(a: DatedTag, b: DatedTag): number {
  const ta = a.pushedAt?.getTime();
  const tb = b.pushedAt?.getTime();
  if (ta !== undefined || tb !== undefined) {
    if (ta === undefined) return 1;
    if (tb === undefined) return -1;
    if (ta !== tb) return tb - ta;
  }
  const va = tagSemver(a.tag);
  const vb = tagSemver(b.tag);
  if (va && vb) {
    const c = semver.rcompare(va, vb);
    if (c !== 0) return c;
  } else if (va) return -1;
  else if (vb) return 1;
  return a.tag < b.tag ? 1 : a.tag > b.tag ? -1 : 0;
}

/** The newest `n` tags of one repository (see compareNewest). */
export function newestTags(tags: DatedTag[], n: number): Set<string> {
  return new Set([...tags].sort(compareNewest).slice(0, n).map((t) => t.tag));
}

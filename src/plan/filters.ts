// A rule's filters with the meaning Harbor's replication gives them, compiled once per rule.
//
// Globs follow Harbor exactly: Harbor matches with github.com/bmatcuk/doublestar v1 (src/pkg/reg/util/
// pattern.go), and `doublestarMatcher` below reimplements that matcher rather than borrowing a JS glob
// library, whose dialects differ in ways that change results (picomatch lets `library/**` match
// `library`, never matches the empty string, negates on a leading `!` and on `[!…]`, and knows extglobs
// and numeric ranges; doublestar v1 does none of that). The rules:
//   - the pattern and the name are split on `/`; the name must have as many components as the pattern,
//     except where a whole component is `**`, which stands for zero or more components (`a/**` needs at
//     least one component after `a`, so it does not match `a` itself; `**/x` matches `x`);
//   - inside a component `*` is any run of characters (never `/`), `?` one character, `[a-z]` / `[^a-z]`
//     a class (only `^` negates), `{a,b}` alternatives (not nested, not across `/`), `\c` a literal c;
//     `**` that is not a whole component acts like `*`;
//   - an empty pattern matches everything (Harbor: no filter); `*` and `**` match the empty string,
//     which is what an untagged artifact's missing tag is matched as (below);
//   - `regex:<expression>` is a regular expression instead (unanchored, as Go's MatchString), as newer
//     Harbor versions accept.
//
// Tag filters and untagged artifacts, as Harbor's artifactTagFilter has it: every tag of an artifact is
// matched, only the matching tags are copied, and the artifact is dropped when none matches. An untagged
// artifact is matched as the empty tag "": with no tag filter, or with `**` / `*`, Harbor copies it,
// with `v*` it does not, with an exclude filter it does unless the exclude matches "". Ferry keeps that
// meaning under `filters.untagged: true`; without it (the default) untagged artifacts are never copied,
// which is the one deliberate difference from Harbor (whose default copies them).
import semver from 'semver';
import type { ArtifactKind, FiltersConfig } from '../config/schema.js';
import type { SourceArtifact } from './types.js';

/** A glob, regex or semver range in `filters` that cannot be compiled; a configuration error. */
export class FilterError extends Error {
  override name = 'FilterError';
}

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

// ---------------------------------------------------------------------------------------------------
// doublestar v1

type Matcher = (s: string) => boolean;

const REGEX_SYNTAX = /[\\^$.*+?()[\]{}|/]/g;
const escapeRegex = (s: string) => s.replace(REGEX_SYNTAX, '\\$&');

/** Splits on `sep` where it is not escaped with a backslash (doublestar's splitPathOnSeparator). */
function splitUnescaped(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '\\' && i + 1 < s.length) {
      cur += c + s[i + 1]!;
      i++;
    } else if (c === sep) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

/** Index of the first `ch` in s at or after `from` that is not preceded by a backslash. */
function indexUnescaped(s: string, ch: string, from: number): number {
  for (let i = from; i < s.length; i++) {
    if (s[i] === '\\') i++;
    else if (s[i] === ch) return i;
  }
  return -1;
}

function bad(pattern: string, why: string): never {
  throw new FilterError(`invalid glob ${JSON.stringify(pattern)}: ${why}`);
}

/** Regex source for one path component of a doublestar pattern (never matches "/"). */
function componentSource(comp: string, whole: string): string {
  let out = '';
  const chars = [...comp];
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i]!;
    if (c === '\\') {
      if (i + 1 >= chars.length) bad(whole, 'a trailing backslash escapes nothing');
      out += escapeRegex(chars[++i]!);
    } else if (c === '*') {
      out += '[^/]*';
    } else if (c === '?') {
      out += '[^/]';
    } else if (c === '[') {
      const rest = chars.slice(i + 1).join('');
      const end = indexUnescaped(rest, ']', 0);
      if (end === -1) bad(whole, 'unclosed [');
      out += classSource([...rest.slice(0, end)], whole);
      i += [...rest.slice(0, end)].length + 1;
    } else if (c === '{') {
      const rest = chars.slice(i + 1).join('');
      const end = indexUnescaped(rest, '}', 0);
      if (end === -1) bad(whole, 'unclosed {');
      const options = splitUnescaped(rest.slice(0, end), ',');
      out += `(?:${options.map((o) => componentSource(o, whole)).join('|')})`;
      i += [...rest.slice(0, end)].length + 1;
    } else {
      out += escapeRegex(c);
    }
  }
  return out;
}

/** A `[...]` class: ranges lo-hi, `\` escapes, a leading `^` negates; never matches "/". */
function classSource(runes: string[], whole: string): string {
  if (runes.length === 0) bad(whole, 'empty character class []');
  let i = 0;
  const negated = runes[0] === '^';
  if (negated) i++;
  let body = '';
  const lit = (r: string) => (/[\\\]^[-]/.test(r) ? `\\${r}` : r);
  const take = (): string => {
    let r = runes[i++]!;
    if (r === '-') bad(whole, 'a class range needs a start');
    if (r === '\\') {
      if (i >= runes.length) bad(whole, 'a trailing backslash in a class');
      r = runes[i++]!;
    }
    return r;
  };
  while (i < runes.length) {
    const lo = take();
    let hi = lo;
    if (i < runes.length && runes[i] === '-') {
      i++;
      if (i >= runes.length) bad(whole, 'a class range needs an end');
      hi = take();
    }
    if (hi < lo) bad(whole, `class range ${lo}-${hi} is out of order`);
    body += hi === lo ? lit(lo) : `${lit(lo)}-${lit(hi)}`;
  }
  return negated ? `[^/${body}]` : `(?!/)[${body}]`;
}

/**
 * A matcher with the semantics of doublestar v1's Match (what Harbor's filters use), plus Harbor's
 * empty-pattern and `regex:` rules. Throws FilterError for a malformed pattern.
 */
export function doublestarMatcher(pattern: string): Matcher {
  if (pattern === '') return () => true;
  if (pattern.startsWith('regex:')) {
    let source = pattern.slice('regex:'.length);
    let flags = '';
    // Go's inline flag group at the start, e.g. (?i); JS wants flags separately.
    const inline = /^\(\?([imsU]+)\)/.exec(source);
    if (inline) {
      flags = [...new Set(inline[1]!.replace('U', '').split(''))].join('');
      source = source.slice(inline[0].length);
    }
    let re: RegExp;
    try {
      re = new RegExp(source, flags);
    } catch (err) {
      throw new FilterError(`invalid regular expression in ${JSON.stringify(pattern)}: ${(err as Error).message}`);
    }
    return (s) => re.test(s);
  }
  const components = splitUnescaped(pattern, '/');
  let src = '';
  let needSeparator = false;
  components.forEach((comp, i) => {
    const last = i === components.length - 1;
    if (comp === '**') {
      // Zero or more whole components: at the end "the rest, if any", in the middle "some components and a /".
      src += last ? (needSeparator ? '/.*' : '.*') : needSeparator ? '/(?:.*/)?' : '(?:.*/)?';
      needSeparator = false;
      return;
    }
    if (needSeparator) src += '/';
    // doublestar matches an empty name component only with the pattern component "*" (or an empty one).
    src += (comp === '*' || comp === '' ? '' : '(?=[^/])') + componentSource(comp, pattern);
    needSeparator = true;
  });
  const re = new RegExp(`^${src}$`, 's');
  return (s) => re.test(s);
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

/** Problems with a rule's filters (invalid globs, regex, semver range), for config validation. */
export function filterErrors(filters: FiltersConfig): string[] {
  const errors: string[] = [];
  for (const key of ['repositories', 'excludeRepositories', 'tags', 'excludeTags'] as const) {
    for (const p of filters[key] ?? []) {
      try {
        doublestarMatcher(p);
      } catch (err) {
        errors.push(`filters.${key}: ${(err as Error).message}`);
      }
    }
  }
  if (filters.tagRegex !== undefined) {
    try {
      new RegExp(filters.tagRegex);
    } catch (err) {
      errors.push(`filters.tagRegex: ${(err as Error).message}`);
    }
  }
  if (filters.semver !== undefined) {
    try {
      new semver.Range(filters.semver);
    } catch (err) {
      errors.push(`filters.semver: invalid range ${JSON.stringify(filters.semver)} (${(err as Error).message})`);
    }
  }
  return errors;
}

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

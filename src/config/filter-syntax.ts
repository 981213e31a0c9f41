// The syntax of a rule's `filters`: Harbor's doublestar globs, `regex:` patterns, tag regexes and
// semver ranges. It lives with the config because a pattern that does not compile is a config error
// (reported by load.ts with its key path); plan/filters.ts matches with the compiled matchers.
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
import semver from 'semver';
import type { FiltersConfig } from './schema.js';

/** A glob, regex or semver range in `filters` that cannot be compiled; a configuration error. */
export class FilterError extends Error {
  override name = 'FilterError';
}

export type Matcher = (s: string) => boolean;

const REGEX_SYNTAX = /[\\^$.*+?()[\]{}|/]/g;
const escapeRegex = (s: string) => s.replace(REGEX_SYNTAX, '\\$&');

/** Splits on `sep` where it is not escaped with a backslash (doublestar's splitPathOnSeparator). */
export function splitUnescaped(s: string, sep: string): string[] {
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

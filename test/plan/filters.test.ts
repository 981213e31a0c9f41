import { describe, expect, it } from 'vitest';
import type { FiltersConfig } from '../../src/config/schema.js';
import { FilterError, compareNewest, compileFilters, doublestarMatcher, filterErrors, newestTags, tagSemver } from '../../src/plan/filters.js';
import type { SourceArtifact } from '../../src/plan/types.js';

const filters = (f: Partial<FiltersConfig> = {}): FiltersConfig => ({ untagged: false, ...f });
const art = (tags: string[], extra: Partial<SourceArtifact> = {}): SourceArtifact => ({ repository: 'r/x', tags, digest: 'sha256:aa', ...extra });

describe('doublestar globs (bmatcuk/doublestar v1, as Harbor matches)', () => {
  // Harbor's own cases (src/pkg/reg/util/pattern_test.go) and doublestar v1's rules.
  it.each([
    ['', 'library', true],
    ['', '', true],
    ['*', 'library', true],
    ['*', 'library/hello-world', false],
    ['**', 'library/hello-world', true],
    ['{library,harbor}/**', 'library/hello-world', true],
    ['{library,harbor}/**', 'harbor/hello-world', true],
    ['{library,harbor}/**', 'other/hello-world', false],
    ['1.?', '1.0', true],
    ['1.?', '1.01', false],
    ['v2.[4-6].*', 'v2.4.0', true],
    ['v2.[4-6].*', 'v2.7.0', false],
    ['library/*', 'library/nginx', true],
    ['library/*', 'library/a/nginx', false],
    ['library/**', 'library/a/nginx', true],
    ['library/**', 'library', false], // ** needs a component after "library/"
    ['**/nginx', 'nginx', true], // ...but in front it may stand for none
    ['**/nginx', 'a/b/nginx', true],
    ['a/**/b', 'a/b', true],
    ['a/**/b', 'a/x/y/b', true],
    ['a/**/b', 'a/x/y/c', false],
    ['lib**', 'library', true], // ** inside a component is just *
    ['lib**', 'library/a', false],
    ['team-?/app', 'team-a/app', true],
    ['team-?/app', 'team-ab/app', false],
    ['a?b', 'a/b', false], // ? never matches /
    ['v[^0-9]*', 'va', true],
    ['v[^0-9]*', 'v1', false],
    ['v[!0-9]*', 'v!', true], // only ^ negates; ! is a member
    ['v[!0-9]*', 'va', false],
    ['!nginx', 'redis', false], // no leading-! negation
    ['!(a)', 'b', false], // no extglobs
    ['{1..3}', '2', false], // no numeric ranges
    ['{1..3}', '1..3', true],
    ['a\\*b', 'a*b', true],
    ['a\\*b', 'axb', false],
    ['{v,release-}1*', 'release-10', true],
    ['Library/*', 'library/x', false], // case-sensitive
  ] as const)('%j on %j → %s', (pattern, name, expected) => {
    expect(doublestarMatcher(pattern)(name)).toBe(expected);
  });

  it('matches the empty string (an untagged artifact) only with *, ** or an empty pattern', () => {
    expect(doublestarMatcher('*')('')).toBe(true);
    expect(doublestarMatcher('**')('')).toBe(true);
    expect(doublestarMatcher('v*')('')).toBe(false);
    expect(doublestarMatcher('{,v*}')('')).toBe(false); // doublestar: an empty name only matches "*"
  });

  it('accepts regex: patterns like newer Harbor (unanchored, Go inline flags)', () => {
    expect(doublestarMatcher('regex:^v\\d+\\.\\d+$')('v1.2')).toBe(true);
    expect(doublestarMatcher('regex:^v\\d+\\.\\d+$')('v1.2.3')).toBe(false);
    expect(doublestarMatcher('regex:rc')('1.0-rc1')).toBe(true);
    expect(doublestarMatcher('regex:(?i)^LATEST$')('latest')).toBe(true);
  });

  it('rejects malformed patterns with a FilterError naming the pattern', () => {
    expect(() => doublestarMatcher('v[1-')).toThrow(FilterError);
    expect(() => doublestarMatcher('{a,b')).toThrow(/unclosed \{/);
    expect(() => doublestarMatcher('a\\')).toThrow(/backslash/);
    expect(() => doublestarMatcher('[]')).toThrow(/empty character class/);
    expect(() => doublestarMatcher('regex:(')).toThrow(/invalid regular expression/);
    expect(() => compileFilters(filters({ tags: ['ok', '[z-a]'] }))).toThrow(/filters\.tags: invalid glob "\[z-a\]"/);
    expect(filterErrors(filters({ semver: '>>nope', tagRegex: '(' }))).toHaveLength(2);
  });
});

describe('repository filters', () => {
  it('includes any pattern, then drops any exclude', () => {
    const m = compileFilters(filters({ repositories: ['library/**', 'team-a/*'], excludeRepositories: ['library/tmp-*', '**/scratch'] }));
    expect(m.repositoryMatches('library/nginx')).toBe(true);
    expect(m.repositoryMatches('library/a/b/c')).toBe(true);
    expect(m.repositoryMatches('team-a/app')).toBe(true);
    expect(m.repositoryMatches('team-a/x/app')).toBe(false);
    expect(m.repositoryMatches('library/tmp-1')).toBe(false);
    expect(m.repositoryMatches('library/x/scratch')).toBe(false);
    expect(m.repositoryMatches('other/app')).toBe(false);
  });
  it('with no patterns matches everything', () => {
    expect(compileFilters(filters()).repositoryMatches('any/thing/at/all')).toBe(true);
    expect(compileFilters(filters({ repositories: [] })).repositoryMatches('x')).toBe(true);
  });
  it('names the projects when the include patterns pin them down (Harbor IsSpecificPath)', () => {
    expect(compileFilters(filters({ repositories: ['library/**', '{team-a,team-b}/*'] })).projects).toEqual(['library', 'team-a', 'team-b']);
    expect(compileFilters(filters({ repositories: ['library/**', 'team-*/x'] })).projects).toBeUndefined();
    expect(compileFilters(filters()).projects).toBeUndefined();
  });
});

describe('artifact selection', () => {
  it('keeps an artifact when any tag matches and pushes only the matching tags', () => {
    const m = compileFilters(filters({ tags: ['v*'], excludeTags: ['*-rc*'] }));
    expect(m.selectArtifact(art(['v1', 'latest', 'v2-rc1']))).toEqual({ keep: true, tags: ['v1'] });
    expect(m.selectArtifact(art(['latest']))).toMatchObject({ keep: false, code: 'tags' });
  });
  it('ANDs the tag filters: globs, excludes, regex and semver together', () => {
    const m = compileFilters(filters({ tags: ['v*', '1.*'], tagRegex: '^v?1\\.', semver: '>=1.2' }));
    expect(m.selectArtifact(art(['v1.1.0', 'v1.2.0', '1.3.0', 'v2.0.0', 'v1.5'])).tags).toEqual(['v1.2.0', '1.3.0']);
  });
  it('filters by regex (unanchored) and by semver range with or without a v', () => {
    expect(compileFilters(filters({ tagRegex: '^release-\\d+$' })).selectArtifact(art(['release-12', 'release-x'])).tags).toEqual(['release-12']);
    expect(compileFilters(filters({ tagRegex: 'rc' })).selectArtifact(art(['1.0-rc1', '1.0'])).tags).toEqual(['1.0-rc1']);
    const m = compileFilters(filters({ semver: '>=1.2 <2' }));
    expect(m.selectArtifact(art(['1.1.0', 'v1.2.0', '1.9.9', '1.5.0-rc.1', '2.0.0', 'latest', '1.27'])).tags).toEqual(['v1.2.0', '1.9.9']);
    // a prerelease matches a range that names one, as in npm / Helm
    expect(compileFilters(filters({ semver: '>=1.5.0-rc.0 <2' })).selectArtifact(art(['1.5.0-rc.1'])).tags).toEqual(['1.5.0-rc.1']);
  });
  it('reads Helm OCI tags with "_" for "+" as semver with build metadata', () => {
    expect(tagSemver('1.2.3_build.5')?.build).toEqual(['build', '5']);
    expect(tagSemver('v1.2.3')?.version).toBe('1.2.3');
    expect(tagSemver('1.2')).toBeUndefined();
    expect(tagSemver('latest')).toBeUndefined();
    expect(compileFilters(filters({ semver: '^1.2.0' })).selectArtifact(art(['1.2.3_abc'])).tags).toEqual(['1.2.3_abc']);
  });

  describe('untagged artifacts (Harbor matches them as the empty tag)', () => {
    it('are skipped by default, whatever the tag filters', () => {
      expect(compileFilters(filters()).selectArtifact(art([]))).toMatchObject({ keep: false, code: 'untagged' });
      expect(compileFilters(filters({ tags: ['**'] })).selectArtifact(art([])).keep).toBe(false);
    });
    it('with untagged: true are kept by digest when no tag filter or one matching "" applies', () => {
      expect(compileFilters(filters({ untagged: true })).selectArtifact(art([]))).toEqual({ keep: true, tags: [] });
      expect(compileFilters(filters({ untagged: true, tags: ['**'] })).selectArtifact(art([])).keep).toBe(true);
      expect(compileFilters(filters({ untagged: true, tags: ['*'] })).selectArtifact(art([])).keep).toBe(true);
      expect(compileFilters(filters({ untagged: true, excludeTags: ['*-rc*'] })).selectArtifact(art([])).keep).toBe(true);
    });
    it('with untagged: true are still dropped by a tag filter that cannot match an empty tag, as in Harbor', () => {
      expect(compileFilters(filters({ untagged: true, tags: ['v*'] })).selectArtifact(art([]))).toMatchObject({ keep: false, code: 'tags' });
      expect(compileFilters(filters({ untagged: true, excludeTags: ['*'] })).selectArtifact(art([])).keep).toBe(false);
      expect(compileFilters(filters({ untagged: true, semver: '*' })).selectArtifact(art([])).keep).toBe(false);
      expect(compileFilters(filters({ untagged: true, tagRegex: '^v' })).selectArtifact(art([])).keep).toBe(false);
    });
    it('need a digest to be copied by', () => {
      expect(compileFilters(filters({ untagged: true })).selectArtifact(art([], { digest: undefined }))).toMatchObject({ keep: false, code: 'untagged' });
    });
  });

  it('requires every listed label', () => {
    const m = compileFilters(filters({ labels: ['release', 'qa'] }));
    expect(m.selectArtifact(art(['1'], { labels: ['release', 'qa', 'x'] })).keep).toBe(true);
    expect(m.selectArtifact(art(['1'], { labels: ['release'] }))).toMatchObject({ keep: false, code: 'labels', reason: 'missing label(s) qa' });
    expect(m.selectArtifact(art(['1'], { labels: [] })).keep).toBe(false);
    // a listing without labels (not Harbor) cannot satisfy a label filter
    expect(m.selectArtifact(art(['1']))).toMatchObject({ keep: false, code: 'labels-unknown' });
  });

  it('checks kinds when the listing knows them and defers otherwise', () => {
    const m = compileFilters(filters({ kinds: ['image', 'chart'] }));
    expect(m.selectArtifact(art(['1'], { kind: 'image' })).keep).toBe(true);
    expect(m.selectArtifact(art(['1'], { kind: 'artifact' }))).toMatchObject({ keep: false, code: 'kind' });
    expect(m.selectArtifact(art(['1'])).keep).toBe(true); // unknown: the transfer stage asks kindAllowed
    expect(m.kindAllowed('chart')).toBe(true);
    expect(m.kindAllowed('artifact')).toBe(false);
    expect(compileFilters(filters()).kindAllowed('artifact')).toBe(true);
  });
});

describe('latest: newest first', () => {
  const t = (tag: string, iso?: string) => ({ tag, pushedAt: iso ? new Date(iso) : undefined });
  it('by push time where known', () => {
    expect([...newestTags([t('a', '2024-01-01'), t('b', '2024-03-01'), t('c', '2024-02-01')], 2)]).toEqual(['b', 'c']);
  });
  it('tags with a time before tags without; ties by version', () => {
    expect([...newestTags([t('9.9.9'), t('1.0.0', '2024-01-01'), t('1.1.0', '2024-01-01')], 3)]).toEqual(['1.1.0', '1.0.0', '9.9.9']);
  });
  it('by semver (highest first) without times, with or without a v', () => {
    expect([...newestTags([t('1.10.0'), t('1.9.0'), t('v2.0.0'), t('2.0.0-rc.1')], 3)]).toEqual(['v2.0.0', '2.0.0-rc.1', '1.10.0']);
  });
  it('versions before other names, then lexically last first', () => {
    expect([...newestTags([t('alpha'), t('1.0.0'), t('beta')], 3)]).toEqual(['1.0.0', 'beta', 'alpha']);
    expect(compareNewest(t('b'), t('a'))).toBeLessThan(0);
    expect(compareNewest(t('a'), t('a'))).toBe(0);
  });
});

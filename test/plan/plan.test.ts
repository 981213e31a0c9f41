import { describe, expect, it } from 'vitest';
import { ruleSchema } from '../../src/config/schema.js';
import { buildRulePlan } from '../../src/plan/build.js';
import { compileFilters, newestTags } from '../../src/plan/filters.js';
import { MappingError, flattenRepository, mapRepository } from '../../src/plan/mapping.js';
import type { SourceArtifact } from '../../src/plan/types.js';

const rule = (extra: Record<string, unknown> = {}) => ruleSchema.parse({ name: 'r', source: 's', destination: 'd', ...extra });
const opts = { sourceRegistry: 's', destinationRegistry: 'd' };

describe('globs (doublestar, as Harbor)', () => {
  const f = (repositories: string[]) => compileFilters({ repositories, untagged: false });
  it('* stops at /, ** crosses it', () => {
    expect(f(['library/*']).repositoryMatches('library/nginx')).toBe(true);
    expect(f(['library/*']).repositoryMatches('library/a/nginx')).toBe(false);
    expect(f(['library/**']).repositoryMatches('library/a/nginx')).toBe(true);
    expect(f(['**']).repositoryMatches('a/b/c')).toBe(true);
  });
  it('supports {a,b} and ?', () => {
    const m = f(['{library,team-a}/app?']);
    expect(m.repositoryMatches('library/app1')).toBe(true);
    expect(m.repositoryMatches('team-a/app2')).toBe(true);
    expect(m.repositoryMatches('team-b/app1')).toBe(false);
    expect(m.repositoryMatches('library/app12')).toBe(false);
  });
  it('applies excludes after includes', () => {
    const m = compileFilters({ repositories: ['**'], excludeRepositories: ['tmp/**'], untagged: false });
    expect(m.repositoryMatches('tmp/x')).toBe(false);
    expect(m.repositoryMatches('prod/x')).toBe(true);
  });
});

describe('artifact selection', () => {
  const a = (tags: string[], extra: Partial<SourceArtifact> = {}): SourceArtifact => ({ repository: 'r/x', tags, digest: 'sha256:aa', ...extra });
  it('keeps an artifact when any tag matches and pushes only the matching tags', () => {
    const m = compileFilters({ tags: ['v*'], excludeTags: ['*-rc*'], untagged: false });
    expect(m.selectArtifact(a(['v1', 'latest', 'v2-rc1']))).toEqual({ keep: true, tags: ['v1'] });
    expect(m.selectArtifact(a(['latest'])).keep).toBe(false);
  });
  it('skips untagged artifacts unless asked, then by digest', () => {
    expect(compileFilters({ untagged: false }).selectArtifact(a([])).keep).toBe(false);
    expect(compileFilters({ untagged: true }).selectArtifact(a([]))).toEqual({ keep: true, tags: [] });
  });
  it('requires every label and the kind', () => {
    const m = compileFilters({ labels: ['release', 'qa'], kinds: ['image'], untagged: false });
    expect(m.selectArtifact(a(['1'], { labels: ['release', 'qa', 'x'], kind: 'image' })).keep).toBe(true);
    expect(m.selectArtifact(a(['1'], { labels: ['release'], kind: 'image' })).reason).toMatch(/missing label/);
    expect(m.selectArtifact(a(['1'], { labels: ['release', 'qa'], kind: 'chart' })).keep).toBe(false);
    expect(m.kindAllowed('artifact')).toBe(false);
  });
  it('filters by regex and semver range (with or without a v)', () => {
    const m = compileFilters({ semver: '>=1.2 <2', untagged: false });
    expect(m.selectArtifact(a(['1.1.0', 'v1.2.0', '1.9.9', '2.0.0', 'latest'])).tags).toEqual(['v1.2.0', '1.9.9']);
    expect(compileFilters({ tagRegex: '^release-\\d+$', untagged: false }).selectArtifact(a(['release-12', 'release-x'])).tags).toEqual(['release-12']);
  });
  it('orders "latest" by push time, else semver, else name', () => {
    const t = (tag: string, iso?: string) => ({ tag, pushedAt: iso ? new Date(iso) : undefined });
    expect([...newestTags([t('a', '2024-01-01'), t('b', '2024-03-01'), t('c', '2024-02-01')], 2)]).toEqual(['b', 'c']);
    expect([...newestTags([t('1.10.0'), t('1.9.0'), t('v2.0.0')], 2)]).toEqual(['v2.0.0', '1.10.0']);
    expect([...newestTags([t('alpha'), t('beta')], 1)]).toEqual(['beta']);
  });
});

describe('flattening (Harbor semantics)', () => {
  const src = 'a/b/c/img';
  it.each([
    ['none', 'dev/a/b/c/img'],
    ['1', 'dev/b/c/img'],
    ['2', 'dev/c/img'],
    ['3', 'dev/img'],
    ['all', 'dev/img'],
  ] as const)('flatten %s', (flatten, expected) => {
    expect(flattenRepository(src, { destinationNamespace: 'dev', flatten })).toBe(expected);
  });
  it('leaves the bare namespace when replacing every level, errors beyond', () => {
    expect(flattenRepository('library/nginx', { destinationNamespace: 'dev', flatten: '2' })).toBe('dev');
    expect(() => flattenRepository('library/nginx', { destinationNamespace: 'dev', flatten: '3' })).toThrow(MappingError);
  });
  it('keeps the source path without a namespace; all keeps the last component', () => {
    expect(flattenRepository('a/b/img', { flatten: 'none' })).toBe('a/b/img');
    expect(flattenRepository('a/b/img', { flatten: 'all' })).toBe('img');
    expect(flattenRepository('a/b/img', { flatten: '1' })).toBe('b/img');
    expect(() => flattenRepository('a/b', { flatten: '2' })).toThrow(MappingError);
  });
  it('renames after flattening, first matching rule wins, and validates the result', () => {
    const r = { destinationNamespace: 'dev', flatten: 'none' as const, rename: [{ from: '^dev/legacy-(.*)$', to: 'dev/old/$1' }, { from: '^dev/(.*)$', to: 'prod/$1' }] };
    expect(mapRepository('legacy-app', r)).toBe('dev/old/app');
    expect(mapRepository('app', r)).toBe('prod/app');
    expect(() => mapRepository('app', { flatten: 'none', rename: [{ from: 'app', to: 'App' }] })).toThrow(/not a valid repository name/);
  });
});

describe('buildRulePlan', () => {
  const artifacts: SourceArtifact[] = [
    { repository: 'library/nginx', tags: ['1.27', 'latest'] },
    { repository: 'team/a/nginx', tags: ['1.0'] },
    { repository: 'team/b/redis', tags: ['7'] },
    { repository: 'x/y', tags: ['1'] },
  ];
  it('maps, filters, and reports collisions naming both sources', async () => {
    const plan = await buildRulePlan(rule({ destinationNamespace: 'dev', flatten: 'all', filters: { repositories: ['library/**', 'team/**'] } }), artifacts, opts);
    expect(plan.items.map((i) => `${i.sourceRepository}:${i.tags.join(',')} -> ${i.destinationRepository}`)).toEqual(['team/b/redis:7 -> dev/redis']);
    expect(plan.problems.map((p) => p.message)).toEqual([
      '"library/nginx" and "team/a/nginx" both map to "dev/nginx"; change flatten, destinationNamespace or add a rename',
      '"library/nginx" and "team/a/nginx" both map to "dev/nginx"; change flatten, destinationNamespace or add a rename',
    ]);
  });
  it('reports too-deep flattening and destination name rules per repository, others continue', async () => {
    const plan = await buildRulePlan(
      rule({ destinationNamespace: 'dev', flatten: '2' }),
      [
        { repository: 'a/b/c/img', tags: ['1'] },
        { repository: 'x/y/z', tags: ['1'] },
        { repository: 'library/nginx', tags: ['1'] },
        { repository: 'q', tags: ['1'] },
      ],
      { ...opts, validateDestination: (r) => (r.split('/').length > 2 ? 'too deep; use flatten: all' : undefined) },
    );
    expect(plan.items.map((i) => i.destinationRepository)).toEqual(['dev/z', 'dev']);
    expect(plan.problems.map((p) => `${p.sourceRepository}: ${p.message}`)).toEqual([
      'a/b/c/img: too deep; use flatten: all',
      'q: flatten: 2 removes 2 level(s) but "q" has only 1',
    ]);
  });
  it('applies latest per repository', async () => {
    const plan = await buildRulePlan(
      rule({ filters: { latest: 1 } }),
      [
        { repository: 'a', tags: ['1.0.0'], digest: 'sha256:1' },
        { repository: 'a', tags: ['1.1.0'], digest: 'sha256:2' },
        { repository: 'b', tags: ['0.1'], digest: 'sha256:3' },
      ],
      opts,
    );
    expect(plan.items.map((i) => `${i.sourceRepository}:${i.tags}`)).toEqual(['a:1.1.0', 'b:0.1']);
    expect(plan.items[0]!.sourceReference).toBe('sha256:2');
  });
});

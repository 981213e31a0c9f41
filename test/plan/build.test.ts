import { describe, expect, it } from 'vitest';
import { ruleSchema } from '../../src/config/schema.js';
import { buildRulePlan } from '../../src/plan/build.js';
import { FilterError } from '../../src/plan/filters.js';
import { MappingError } from '../../src/plan/mapping.js';
import type { SourceArtifact } from '../../src/plan/types.js';

const rule = (extra: Record<string, unknown> = {}) => ruleSchema.parse({ name: 'r', source: 's', destination: 'd', ...extra });
const opts = { sourceRegistry: 's', destinationRegistry: 'd' };
const show = (plan: Awaited<ReturnType<typeof buildRulePlan>>) => plan.items.map((i) => `${i.sourceRepository}@${i.sourceReference} -> ${i.destinationRepository}:${i.tags.join(',')}`);

async function* slowly(artifacts: SourceArtifact[]): AsyncIterable<SourceArtifact> {
  for (const a of artifacts) {
    await new Promise((r) => setImmediate(r));
    yield a;
  }
}

describe('buildRulePlan', () => {
  it('filters, maps and produces work items (digest as reference when known, else the first selected tag)', async () => {
    const plan = await buildRulePlan(
      rule({ destinationNamespace: 'dev', flatten: '1', filters: { repositories: ['library/**'], tags: ['1.*', 'latest'] } }),
      slowly([
        { repository: 'library/nginx', tags: ['1.27', 'latest', 'mainline'], digest: 'sha256:n1', kind: 'image' },
        { repository: 'library/nginx', tags: ['0.9'], digest: 'sha256:n0' },
        { repository: 'library/redis', tags: ['latest'] },
        { repository: 'other/x', tags: ['1.0'] },
      ]),
      opts,
    );
    expect(show(plan)).toEqual(['library/nginx@sha256:n1 -> dev/nginx:1.27,latest', 'library/redis@latest -> dev/redis:latest']);
    expect(plan.items[0]).toMatchObject({ rule: 'r', sourceRegistry: 's', destinationRegistry: 'd', digest: 'sha256:n1', kind: 'image' });
    expect(plan.items[1]!.digest).toBeUndefined();
    expect(plan.problems).toEqual([]);
    expect(plan.deletions).toEqual([]);
  });

  it('pushes untagged artifacts by digest with no tags when asked', async () => {
    const artifacts: SourceArtifact[] = [
      { repository: 'a/app', tags: [], digest: 'sha256:u' },
      { repository: 'a/app', tags: ['1'], digest: 'sha256:t' },
    ];
    expect(show(await buildRulePlan(rule(), artifacts, opts))).toEqual(['a/app@sha256:t -> a/app:1']);
    const plan = await buildRulePlan(rule({ filters: { untagged: true } }), artifacts, opts);
    expect(show(plan)).toEqual(['a/app@sha256:u -> a/app:', 'a/app@sha256:t -> a/app:1']);
    expect(plan.items[0]!.tags).toEqual([]);
  });

  it('reports collisions naming both sources and drops all their items; the others continue', async () => {
    const plan = await buildRulePlan(
      rule({ destinationNamespace: 'dev', flatten: 'all' }),
      [
        { repository: 'team/a/nginx', tags: ['1.0'] },
        { repository: 'library/nginx', tags: ['1.27', 'latest'] },
        { repository: 'team/b/redis', tags: ['7'] },
        { repository: 'library/nginx', tags: ['1.26'] },
      ],
      opts,
    );
    expect(show(plan)).toEqual(['team/b/redis@7 -> dev/redis:7']);
    expect(plan.problems).toEqual([
      { rule: 'r', sourceRepository: 'team/a/nginx', destinationRepository: 'dev/nginx', message: '"library/nginx" and "team/a/nginx" both map to "dev/nginx"; change destinationNamespace or flatten, or add a rename' },
      { rule: 'r', sourceRepository: 'library/nginx', destinationRepository: 'dev/nginx', message: '"library/nginx" and "team/a/nginx" both map to "dev/nginx"; change destinationNamespace or flatten, or add a rename' },
    ]);
  });

  it('names every source of a collision of three', async () => {
    const plan = await buildRulePlan(rule({ flatten: 'all' }), ['x/app', 'y/app', 'z/app'].map((repository) => ({ repository, tags: ['1'] })), opts);
    expect(plan.items).toEqual([]);
    expect(plan.problems[0]!.message).toBe('"x/app", "y/app" and "z/app" all map to "app"; change destinationNamespace or flatten, or add a rename');
  });

  it('resolves a collision with rename', async () => {
    const plan = await buildRulePlan(
      rule({ destinationNamespace: 'dev', flatten: 'all', rename: [{ from: '^dev/nginx$', to: 'dev/nginx-legacy' }] }),
      [{ repository: 'library/nginx', tags: ['1'] }],
      opts,
    );
    expect(show(plan)).toEqual(['library/nginx@1 -> dev/nginx-legacy:1']);
  });

  it('reports too-deep flattening and destination name rules per repository, and the others continue', async () => {
    const plan = await buildRulePlan(
      rule({ destinationNamespace: 'dev', flatten: '2' }),
      [
        { repository: 'a/b/c/img', tags: ['1'] },
        { repository: 'a/b/c/img', tags: ['2'] },
        { repository: 'x/y/z', tags: ['1'] },
        { repository: 'library/nginx', tags: ['1'] },
        { repository: 'q', tags: ['1'] },
      ],
      { ...opts, validateDestination: (r) => (r.split('/').length > 2 ? `"${r}" is deeper than organization/name; use flatten: all` : undefined) },
    );
    expect(show(plan)).toEqual(['x/y/z@1 -> dev/z:1', 'library/nginx@1 -> dev:1']);
    expect(plan.problems.map((p) => `${p.sourceRepository} -> ${p.destinationRepository ?? '?'}: ${p.message}`)).toEqual([
      'a/b/c/img -> dev/c/img: "dev/c/img" is deeper than organization/name; use flatten: all',
      'q -> ?: flatten: 2 removes 2 leading level(s) but "q" has only 1; use a lower level or flatten: all',
    ]);
  });

  it('reports a name made invalid by rename, and a validator that throws, as problems', async () => {
    const plan = await buildRulePlan(
      rule({ rename: [{ from: '^bad$', to: 'Bad' }] }),
      [
        { repository: 'bad', tags: ['1'] },
        { repository: 'boom', tags: ['1'] },
        { repository: 'fine', tags: ['1'] },
      ],
      {
        ...opts,
        validateDestination: (r) => {
          if (r === 'boom') throw new Error('validator exploded');
          return undefined;
        },
      },
    );
    expect(show(plan)).toEqual(['fine@1 -> fine:1']);
    expect(plan.problems.map((p) => p.message)).toEqual(['"bad" maps to "Bad" (renamed from "bad"), which is not a valid OCI repository name', 'validator exploded']);
  });

  it('reports nothing for repositories the filters leave empty', async () => {
    const plan = await buildRulePlan(rule({ destinationNamespace: 'dev', flatten: '3', filters: { tags: ['v*'] } }), [{ repository: 'shallow', tags: ['latest'] }], opts);
    expect(plan.items).toEqual([]);
    expect(plan.problems).toEqual([]);
  });

  it('fails the whole rule on an invalid filter or rename regex', async () => {
    await expect(buildRulePlan(rule({ filters: { tags: ['[x'] } }), [], opts)).rejects.toBeInstanceOf(FilterError);
    await expect(buildRulePlan(rule({ rename: [{ from: '(', to: '' }] }), [], opts)).rejects.toBeInstanceOf(MappingError);
  });

  it('says once that a label filter needs a source that knows labels', async () => {
    const plan = await buildRulePlan(
      rule({ filters: { labels: ['release'] } }),
      [
        { repository: 'a', tags: ['1'] },
        { repository: 'b', tags: ['1'] },
        { repository: 'h', tags: ['1'], labels: ['release'], digest: 'sha256:h' },
      ],
      opts,
    );
    expect(show(plan)).toEqual(['h@sha256:h -> h:1']);
    expect(plan.problems).toEqual([
      { rule: 'r', sourceRepository: '*', message: 'filters.labels needs a source that reports labels (a Harbor registry); s listed 2 repositories without labels and nothing was selected from them' },
    ]);
  });

  it('merges an artifact listed twice into one item with all selected tags', async () => {
    const plan = await buildRulePlan(
      rule(),
      [
        { repository: 'a', tags: ['1'], digest: 'sha256:x' },
        { repository: 'a', tags: ['latest'], digest: 'sha256:x' },
      ],
      opts,
    );
    expect(show(plan)).toEqual(['a@sha256:x -> a:1,latest']);
  });

  describe('latest', () => {
    it('keeps the newest N tags per repository by push time, tag time before artifact time', async () => {
      const plan = await buildRulePlan(
        rule({ filters: { latest: 2, excludeTags: ['dev'] } }),
        [
          { repository: 'a', tags: ['1.0', 'stable'], digest: 'sha256:1', pushedAt: new Date('2024-01-01'), tagPushedAt: { stable: new Date('2024-06-01') } },
          { repository: 'a', tags: ['1.1'], digest: 'sha256:2', pushedAt: new Date('2024-03-01') },
          { repository: 'a', tags: ['dev'], digest: 'sha256:3', pushedAt: new Date('2024-12-01') },
          { repository: 'b', tags: ['0.1'], digest: 'sha256:4', pushedAt: new Date('2020-01-01') },
        ],
        opts,
      );
      // "dev" is newest but excluded before latest counts; 1.0 (Jan) loses to stable (Jun) and 1.1 (Mar)
      expect(show(plan)).toEqual(['a@sha256:1 -> a:stable', 'a@sha256:2 -> a:1.1', 'b@sha256:4 -> b:0.1']);
    });
    it('falls back to semver, then names, without push times (plain registries)', async () => {
      const plan = await buildRulePlan(
        rule({ filters: { latest: 2 } }),
        ['1.9.0', 'v1.10.0', 'latest', '1.2.0'].map((tag) => ({ repository: 'a', tags: [tag] })),
        opts,
      );
      // items stay in listing order
      expect(show(plan)).toEqual(['a@1.9.0 -> a:1.9.0', 'a@v1.10.0 -> a:v1.10.0']);
      const names = await buildRulePlan(rule({ filters: { latest: 1 } }), ['alpha', 'beta'].map((tag) => ({ repository: 'a', tags: [tag] })), opts);
      expect(show(names)).toEqual(['a@beta -> a:beta']);
    });
    it('combines with semver and keeps untagged artifacts that untagged: true selected', async () => {
      const plan = await buildRulePlan(
        rule({ filters: { latest: 1, semver: '<2', untagged: true } }),
        [
          { repository: 'a', tags: [], digest: 'sha256:u' },
          { repository: 'a', tags: ['1.0.0'], digest: 'sha256:1' },
          { repository: 'a', tags: ['1.5.0'], digest: 'sha256:2' },
          { repository: 'a', tags: ['2.0.0'], digest: 'sha256:3' },
        ],
        opts,
      );
      // semver cannot match an empty tag, so the untagged artifact goes too (Harbor's rule)
      expect(show(plan)).toEqual(['a@sha256:2 -> a:1.5.0']);
      const untagged = await buildRulePlan(
        rule({ filters: { latest: 1, untagged: true } }),
        [
          { repository: 'a', tags: [], digest: 'sha256:u' },
          { repository: 'a', tags: ['1.0.0'], digest: 'sha256:1' },
          { repository: 'a', tags: ['1.5.0'], digest: 'sha256:2' },
        ],
        opts,
      );
      expect(show(untagged)).toEqual(['a@sha256:u -> a:', 'a@sha256:2 -> a:1.5.0']);
    });
  });

  it('carries ChartMuseum charts through with their version tag as the reference', async () => {
    const chartMuseum = { project: 'charts', name: 'web', version: '1.0.0+b1', url: 'http://h/chartrepo/charts/charts/web-1.0.0+b1.tgz' };
    const plan = await buildRulePlan(rule({ destinationNamespace: 'oci' }), [{ repository: 'charts/web', tags: ['1.0.0_b1'], kind: 'chart', chartMuseum }], opts);
    expect(plan.items).toEqual([
      {
        rule: 'r',
        sourceRegistry: 's',
        destinationRegistry: 'd',
        sourceRepository: 'charts/web',
        destinationRepository: 'oci/charts/web',
        sourceReference: '1.0.0_b1',
        tags: ['1.0.0_b1'],
        kind: 'chart',
        chartMuseum,
      },
    ]);
  });
});

import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SourceArtifact } from '../../src/plan/types.js';
import { HarborApi, harborKind, harborRepositoryPath, harborTime, nextLink } from '../../src/providers/harbor-api.js';
import { AuthError, RegistryError } from '../../src/registry/errors.js';
import { type HarborStub, startHarborStub } from '../helpers/harbor-stub.js';

const d = (c: string) => `sha256:${c.repeat(64).slice(0, 64)}`;
const robot = { username: 'robot$library+sync', password: 'S3cret!$' };

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
const brief = (a: SourceArtifact) => `${a.repository}@${a.digest ?? '-'}:${a.tags.join(',')}`;

describe('HarborApi against a Harbor API stand-in', () => {
  let harbor: HarborStub;
  let api: HarborApi;

  beforeAll(async () => {
    harbor = await startHarborStub({
      users: { [robot.username]: robot.password },
      maxPageSize: 2,
      projects: [
        { name: 'library', public: true },
        { name: 'team' },
        { name: 'empty' },
        { name: 'p4' },
        { name: 'p5' },
      ],
      artifacts: [
        {
          repository: 'library/nginx',
          digest: d('1'),
          type: 'IMAGE',
          pushTime: '2024-05-01T10:00:00Z',
          tags: [{ name: '1.27', pushTime: '2024-05-01T10:00:00Z' }, { name: 'latest', pushTime: '2024-06-01T10:00:00Z' }, 'stable'],
          labels: ['release', 'qa'],
        },
        { repository: 'library/nginx', digest: d('2'), pushTime: '2024-04-01T00:00:00Z', tags: ['1.26'] },
        { repository: 'library/nginx', digest: d('3'), pushTime: '2024-03-01T00:00:00Z', tags: [] },
        // accessories of d(1): never listed by Ferry
        { repository: 'library/nginx', digest: d('4'), accessoryOf: d('1'), accessoryType: 'signature.cosign', tags: [] },
        { repository: 'library/nginx', digest: d('5'), accessoryOf: d('1'), accessoryType: 'sbom.harbor', tags: [] },
        { repository: 'library/charts-oci', digest: d('6'), type: 'CHART', tags: ['0.1.0'] },
        { repository: 'library/bundle', digest: d('7'), type: 'CNAB', tags: ['v1'] },
        { repository: 'team/a/b', digest: d('8'), tags: ['v1'], labels: ['release'] },
        { repository: 'team/a/c/d', digest: d('9'), tags: ['v2'] },
        { repository: 'team/tool', digest: d('a'), tags: ['x'] },
      ],
    });
    api = new HarborApi({ url: harbor.url, ...robot, registry: 'idc', retryDelayMs: 1 });
  });
  afterAll(() => harbor?.close());

  it('pages through projects following Link and X-Total-Count', async () => {
    harbor.requests.length = 0;
    const projects = await collect(api.listProjects());
    expect(projects.map((p) => p.name)).toEqual(['library', 'team', 'empty', 'p4', 'p5']);
    expect(projects[0]).toMatchObject({ name: 'library', public: true, projectId: 1 });
    expect(projects[1]!.public).toBe(false);
    const pages = harbor.requests.map((r) => new URL(r.path, 'http://x').searchParams);
    expect(pages.map((q) => q.get('page'))).toEqual(['1', '2', '3']);
    expect(pages.every((q) => Number(q.get('page_size')) <= 100)).toBe(true);
  });

  it('lists every artifact: nested names double-encoded, several tags with push times, labels, kinds, untagged, no accessories', async () => {
    harbor.requests.length = 0;
    const artifacts = await collect(api.listArtifacts());
    expect(artifacts.map(brief).sort()).toEqual(
      [
        `library/nginx@${d('1')}:1.27,latest,stable`,
        `library/nginx@${d('2')}:1.26`,
        `library/nginx@${d('3')}:`,
        `library/charts-oci@${d('6')}:0.1.0`,
        `library/bundle@${d('7')}:v1`,
        `team/a/b@${d('8')}:v1`,
        `team/a/c/d@${d('9')}:v2`,
        `team/tool@${d('a')}:x`,
      ].sort(),
    );
    const nginx = artifacts.find((a) => a.digest === d('1'))!;
    // size: Harbor's artifact size (the stub's default), the progress bars' planned bytes
    expect(nginx).toMatchObject({ kind: 'image', labels: ['release', 'qa'], pushedAt: new Date('2024-05-01T10:00:00Z'), size: 1234 });
    expect(nginx.tagPushedAt).toEqual({
      '1.27': new Date('2024-05-01T10:00:00Z'),
      latest: new Date('2024-06-01T10:00:00Z'),
      stable: new Date('2024-05-01T10:00:00Z'),
    });
    expect(artifacts.find((a) => a.digest === d('3'))!.labels).toEqual([]); // labels known, just none
    expect(artifacts.find((a) => a.digest === d('6'))!.kind).toBe('chart');
    expect(artifacts.find((a) => a.digest === d('7'))!.kind).toBe('artifact');

    const artifactRequests = harbor.requests.filter((r) => r.path.includes('/artifacts'));
    expect(artifactRequests.some((r) => r.path.includes('/projects/team/repositories/a%252Fc%252Fd/artifacts?'))).toBe(true);
    for (const r of artifactRequests) {
      const q = new URL(r.path, 'http://x').searchParams;
      // Harbor >= 2.8 (the stub answers 2.11): accessories asked for, to count every referrer.
      expect([q.get('with_tag'), q.get('with_label'), q.get('with_accessory')]).toEqual(['true', 'true', 'true']);
      expect(r.status).toBe(200);
    }
    // library/nginx has three listed artifacts: two pages of two
    expect(artifactRequests.filter((r) => r.path.includes('/library/repositories/nginx/')).length).toBe(2);
    expect(harbor.requests.every((r) => r.user === robot.username)).toBe(true);
  });

  it('asks only for repositories that may match, and only named projects when given', async () => {
    harbor.requests.length = 0;
    const artifacts = await collect(api.listArtifacts({ repositoryMayMatch: (r) => r.startsWith('team/a/'), projects: ['team', 'gone'] }));
    expect(artifacts.map((a) => a.repository).sort()).toEqual(['team/a/b', 'team/a/c/d']);
    expect(harbor.requests.some((r) => r.path.startsWith('/api/v2.0/projects?'))).toBe(false);
    expect(harbor.requests.some((r) => r.path.includes('tool/artifacts'))).toBe(false);
    expect(harbor.requests.find((r) => r.path.startsWith('/api/v2.0/projects/gone/'))?.status).toBe(404);
  });

  it('skips accessories that an older Harbor lists as plain artifacts (cosign tag scheme)', async () => {
    const old = await startHarborStub({
      listAccessories: true,
      artifacts: [
        { repository: 'p/app', digest: d('1'), tags: ['1.0'] },
        { repository: 'p/app', digest: d('2'), tags: [`sha256-${'1'.repeat(64)}.sig`], accessoryOf: d('1') },
        { repository: 'p/app', digest: d('3'), tags: [`sha256-${'1'.repeat(64)}`] },
        { repository: 'p/app', digest: d('4'), tags: ['2.0', `sha256-${'4'.repeat(64)}.att`] },
      ],
    });
    try {
      const artifacts = await collect(new HarborApi({ url: old.url }).listArtifacts());
      expect(artifacts.map(brief).sort()).toEqual([`p/app@${d('1')}:1.0`, `p/app@${d('4')}:2.0`]);
    } finally {
      await old.close();
    }
  });

  it('sends robot credentials with "$" and "+" intact, and reports refused ones as AuthError without the secret', async () => {
    const wrong = new HarborApi({ url: harbor.url, username: robot.username, password: 'nope', registry: 'idc' });
    const err = await collect(wrong.listProjects()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuthError);
    expect(err).toMatchObject({ status: 401, code: 'UNAUTHORIZED', registry: 'idc' });
    expect(String((err as Error).message)).not.toContain('nope');
    expect(JSON.stringify(err)).not.toContain('nope');
    const anonymous = await collect(new HarborApi({ url: harbor.url }).listProjects()).catch((e: unknown) => e);
    expect(anonymous).toBeInstanceOf(AuthError);
  });

  it('hides what a robot may not see: projects it lacks are 403 AuthErrors', async () => {
    const limited = await startHarborStub({
      users: { 'robot$a': { password: 'x', projects: ['a'] } },
      artifacts: [
        { repository: 'a/app', digest: d('1'), tags: ['1'] },
        { repository: 'b/app', digest: d('2'), tags: ['1'] },
      ],
    });
    try {
      const a = new HarborApi({ url: limited.url, username: 'robot$a', password: 'x' });
      expect((await collect(a.listArtifacts())).map((x) => x.repository)).toEqual(['a/app']);
      await expect(collect(a.listRepositories('b'))).rejects.toMatchObject({ name: 'AuthError', status: 403, code: 'FORBIDDEN' });
    } finally {
      await limited.close();
    }
  });

  it('maps errors to RegistryError with status and Harbor code, retrying transient ones', async () => {
    harbor.inject(/\/projects\/library\/repositories\?/, 503, { times: 1, retryAfter: '0' });
    expect((await collect(api.listRepositories('library'))).length).toBe(3);

    harbor.inject(/\/projects\/library\/repositories\?/, 500, { times: 1 });
    const err = await collect(api.listRepositories('library')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect(err).toMatchObject({ status: 500, code: 'INTERNAL_SERVER_ERROR', registry: 'idc' });

    const none = await collect(api.listRepositoryArtifacts('library/missing')).catch((e: unknown) => e);
    expect(none).toMatchObject({ status: 404, code: 'NOT_FOUND', repository: 'library/missing' });
  });

  it('creates projects private by default; 409 means it exists; HEAD tells existence', async () => {
    expect(await api.projectExists('newproj')).toBe(false);
    expect(await api.createProject('newproj')).toBe('created');
    expect(harbor.projects.get('newproj')).toMatchObject({ public: false, created: true });
    expect(await api.createProject('newproj')).toBe('exists');
    expect(await api.projectExists('newproj')).toBe(true);
    expect(await api.createProject('pubproj', true)).toBe('created');
    expect(harbor.projects.get('pubproj')!.public).toBe(true);
    await expect(api.createProject('Bad Name')).rejects.toMatchObject({ status: 400, code: 'BAD_REQUEST' });
    const post = harbor.requests.filter((r) => r.method === 'POST');
    expect(post.map((r) => r.status)).toEqual([201, 409, 201, 400]);
  });
});

describe('the stand-in behaves like Harbor', () => {
  it('answers a single-encoded nested repository with 404 and the double-encoded one with 200', async () => {
    const harbor = await startHarborStub({ artifacts: [{ repository: 'team/a/b', digest: d('1'), tags: ['1'] }] });
    try {
      const single = await request(`${harbor.url}/api/v2.0/projects/team/repositories/a%2Fb/artifacts`);
      expect(single.statusCode).toBe(404);
      expect(((await single.body.json()) as { errors: { code: string }[] }).errors[0]!.code).toBe('NOT_FOUND');
      const double = await request(`${harbor.url}/api/v2.0/projects/team/repositories/a%252Fb/artifacts?with_tag=true`);
      expect(double.statusCode).toBe(200);
      const [artifact] = (await double.body.json()) as { digest: string; tags: { name: string }[]; labels: unknown; accessories: unknown }[];
      expect(artifact).toMatchObject({ digest: d('1'), tags: [{ name: '1' }] });
      expect('labels' in artifact! || 'accessories' in artifact!).toBe(false); // empty lists left out, as Harbor does
      const tooBig = await request(`${harbor.url}/api/v2.0/projects?page_size=101`);
      expect(tooBig.statusCode).toBe(422);
      await tooBig.body.dump();
    } finally {
      await harbor.close();
    }
  });
});

describe('ChartMuseum (Harbor <= 2.7)', () => {
  let harbor: HarborStub;
  const tgz = Buffer.from('chart-bytes');
  beforeAll(async () => {
    harbor = await startHarborStub({
      projects: [{ name: 'charts' }, { name: 'plain' }],
      charts: [
        { project: 'charts', name: 'web', version: '1.0.0', content: tgz, prov: Buffer.from('prov'), created: '2023-05-01T00:00:00Z', labels: ['release'] },
        { project: 'charts', name: 'web', version: '1.1.0+build.7', content: tgz, created: '2023-06-01T00:00:00Z' },
        { project: 'charts', name: 'db', version: '0.3.0', content: tgz },
      ],
      artifacts: [{ repository: 'plain/app', digest: d('1'), tags: ['1'] }],
    });
  });
  afterAll(() => harbor?.close());

  it('lists each chart version with tag, labels, time and an absolute download URL', async () => {
    const api = new HarborApi({ url: harbor.url });
    const charts = await collect(api.listChartMuseum('charts'));
    expect(charts.map(brief)).toEqual(['charts/db@-:0.3.0', 'charts/web@-:1.0.0', 'charts/web@-:1.1.0_build.7']);
    const first = charts.find((c) => c.tags[0] === '1.0.0')!;
    expect(first).toMatchObject({
      kind: 'chart',
      labels: ['release'],
      pushedAt: new Date('2023-05-01T00:00:00Z'),
      chartMuseum: {
        project: 'charts',
        name: 'web',
        version: '1.0.0',
        url: `${harbor.url}/chartrepo/charts/charts/web-1.0.0.tgz`,
        provUrl: `${harbor.url}/chartrepo/charts/charts/web-1.0.0.tgz.prov`,
      },
    });
    expect(charts.find((c) => c.tags[0] === '1.1.0_build.7')!.chartMuseum).toMatchObject({ version: '1.1.0+build.7' });
    expect(charts.find((c) => c.tags[0] === '1.1.0_build.7')!.chartMuseum!.provUrl).toBeUndefined();
    const download = await request(first.chartMuseum!.url!);
    expect(Buffer.from(await download.body.arrayBuffer())).toEqual(tgz);
  });

  it('is part of listArtifacts when asked, filtered by repository', async () => {
    const api = new HarborApi({ url: harbor.url });
    const all = await collect(api.listArtifacts({ includeChartMuseum: true, repositoryMayMatch: (r) => r !== 'charts/db' }));
    expect(all.map(brief).sort()).toEqual(['charts/web@-:1.0.0', 'charts/web@-:1.1.0_build.7', `plain/app@${d('1')}:1`]);
    expect((await collect(api.listArtifacts())).map((a) => a.repository)).toEqual(['plain/app']);
  });

  it('yields nothing when Harbor has no ChartMuseum (>= 2.8 answers 404)', async () => {
    const modern = await startHarborStub({ chartMuseum: false, projects: [{ name: 'charts' }], charts: [{ project: 'charts', name: 'web', version: '1.0.0' }] });
    try {
      const api = new HarborApi({ url: modern.url });
      expect(await collect(api.listChartMuseum('charts'))).toEqual([]);
      expect(await collect(api.listArtifacts({ includeChartMuseum: true }))).toEqual([]);
    } finally {
      await modern.close();
    }
  });
});

describe('Harbor answer shapes', () => {
  const artifacts = [
    { repository: 'p/app', digest: d('1'), tags: ['1.0'], labels: ['release'], pushTime: '2024-02-01T00:00:00Z' },
    { repository: 'p/app', digest: d('2'), tags: [], pushTime: '2024-01-01T00:00:00Z' },
  ];

  it('reads empty lists the same whether Harbor leaves the key out (its default), writes null or []', async () => {
    const listings: string[][] = [];
    for (const emptyLists of ['omit', 'null', 'empty'] as const) {
      const h = await startHarborStub({ emptyLists, artifacts });
      try {
        const raw = await request(`${h.url}/api/v2.0/projects/p/repositories/app/artifacts?with_tag=true&with_label=true&page_size=10`);
        const body = (await raw.body.json()) as Record<string, unknown>[];
        const untagged = body.find((a) => a.digest === d('2'))!;
        if (emptyLists === 'omit') expect(['tags', 'labels', 'accessories', 'annotations', 'references'].filter((k) => k in untagged)).toEqual([]);
        else expect(untagged.tags).toEqual(emptyLists === 'null' ? null : []);
        const listed = await collect(new HarborApi({ url: h.url }).listArtifacts());
        listings.push(listed.map((a) => `${brief(a)}|${(a.labels ?? []).join(',')}`).sort());
      } finally {
        await h.close();
      }
    }
    expect(listings[0]).toEqual([`p/app@${d('1')}:1.0|release`, `p/app@${d('2')}:|`]);
    expect(listings[1]).toEqual(listings[0]);
    expect(listings[2]).toEqual(listings[0]);
  });

  it('answers chart_count and tag.signed only as Harbor <= 2.7 did', async () => {
    for (const [version, present] of [['2.11', false], ['2.7', true]] as const) {
      const h = await startHarborStub({ version, artifacts });
      try {
        const projects = (await (await request(`${h.url}/api/v2.0/projects`)).body.json()) as Record<string, unknown>[];
        expect('chart_count' in projects[0]!).toBe(present);
        const list = (await (await request(`${h.url}/api/v2.0/projects/p/repositories/app/artifacts?with_tag=true`)).body.json()) as { tags?: Record<string, unknown>[] }[];
        expect('signed' in list.find((a) => a.tags)!.tags![0]!).toBe(present);
      } finally {
        await h.close();
      }
    }
  });

  it('never hides an artifact because an answer names it among accessories (no accessories logic)', async () => {
    // A validator's example: an artifact listing itself as its own accessory, in an answer that
    // carries accessories although Ferry asks with_accessory=false.
    const h = await startHarborStub({
      listAccessories: true,
      alwaysAccessories: true,
      artifacts: [
        { repository: 'p/app', digest: d('1'), tags: ['1.0'], accessoryOf: d('1') },
        { repository: 'p/app', digest: d('2'), tags: ['2.0'] },
        { repository: 'p/app', digest: d('3'), tags: ['3.0'], accessoryOf: d('2') },
      ],
    });
    try {
      const listed = await collect(new HarborApi({ url: h.url }).listArtifacts());
      expect(listed.map(brief).sort()).toEqual([`p/app@${d('1')}:1.0`, `p/app@${d('2')}:2.0`, `p/app@${d('3')}:3.0`]);
    } finally {
      await h.close();
    }
  });
});

describe('Harbor referrers from the listing', () => {
  const artifacts = [
    { repository: 'p/app', digest: d('1'), tags: ['1.0'] },
    { repository: 'p/app', digest: d('2'), tags: ['2.0'] },
    { repository: 'p/app', digest: d('3'), accessoryOf: d('2') },
    { repository: 'p/app', digest: d('4'), accessoryOf: d('2'), accessoryType: 'subject.accessory' },
  ];

  it('counts each artifact\'s accessories on Harbor >= 2.8 (every referrer is one), with the media type', async () => {
    const h = await startHarborStub({ artifacts, version: '2.8' });
    try {
      const listed = await collect(new HarborApi({ url: h.url }).listArtifacts());
      expect(listed.map((a) => [a.tags[0], a.referrers, a.mediaType])).toEqual(
        expect.arrayContaining([
          ['1.0', 0, 'application/vnd.oci.image.manifest.v1+json'],
          ['2.0', 2, 'application/vnd.oci.image.manifest.v1+json'],
        ]),
      );
      expect(listed).toHaveLength(2);
      expect(h.requests.filter((r) => r.path.includes('/artifacts?')).every((r) => r.path.includes('with_accessory=true'))).toBe(true);
    } finally {
      await h.close();
    }
  });

  it('leaves them unknown before 2.8 (OCI subject referrers were no accessories yet): the copier looks them up', async () => {
    const h = await startHarborStub({ artifacts, version: '2.7' });
    try {
      const listed = await collect(new HarborApi({ url: h.url }).listArtifacts());
      expect(listed.map((a) => a.referrers)).toEqual([undefined, undefined]);
      expect(h.requests.filter((r) => r.path.includes('/artifacts?')).every((r) => r.path.includes('with_accessory=false'))).toBe(true);
    } finally {
      await h.close();
    }
  });
});

describe('Harbor tag inventory (API v2.0 artifacts, 100 a page)', () => {
  it('lists every tag with digest, media type, size and push time in one request per 100 artifacts', async () => {
    const artifacts = Array.from({ length: 250 }, (_, i) => ({
      repository: 'team/a/b',
      digest: `sha256:${String(i).padStart(64, '0')}`,
      pushTime: new Date(Date.UTC(2024, 0, 1) + i * 60_000).toISOString(),
      size: 1000 + i,
      tags: i % 5 === 0 ? [] : i % 2 ? [`v${i}`] : [`v${i}`, { name: `alias-${i}`, pushTime: new Date(Date.UTC(2025, 0, 1) + i * 60_000).toISOString() }],
    }));
    const h = await startHarborStub({ maxPageSize: 100, artifacts });
    try {
      const api = new HarborApi({ url: h.url });
      const inventory = await collect(api.listTagInventory('team/a/b'));
      const tagCount = artifacts.reduce((n, a) => n + a.tags.length, 0);
      expect(inventory).toHaveLength(tagCount);
      const v2 = inventory.find((e) => e.tag === 'v2')!;
      expect(v2).toEqual({ tag: 'v2', digest: artifacts[2]!.digest, mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 1002, pushedAt: artifacts[2]!.pushTime });
      expect(inventory.find((e) => e.tag === 'alias-2')!.pushedAt).toBe('2025-01-01T00:02:00.000Z'); // the tag's own push time
      const listing = h.requests.filter((r) => r.path.includes('/artifacts'));
      expect(listing).toHaveLength(3);
      expect(listing[0]!.path).toContain('/projects/team/repositories/a%252Fb/artifacts?');
      expect(listing.length).toBeLessThanOrEqual(tagCount / 50);
      expect(await collect(api.listTagInventory('team/missing'))).toEqual([]);
      expect(await collect(api.listTagInventory('nope/missing'))).toEqual([]);
      expect(h.requests.filter((r) => r.path === '/api/v2.0/systeminfo')).toHaveLength(1); // asked once: this is a Harbor
    } finally {
      await h.close();
    }
  });
});

describe('Harbor tag inventory without a Harbor API', () => {
  it('says there is no Harbor API instead of listing nothing (a plain registry configured as kind: harbor)', async () => {
    const { startRegistry } = await import('../helpers/index.js');
    const plain = await startRegistry({ auth: 'none' });
    try {
      const err = await collect(new HarborApi({ url: plain.url, registry: 'idc' }).listTagInventory('library/nginx')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RegistryError);
      expect((err as RegistryError).message).toMatch(/no Harbor API at .*use kind: registry/);
    } finally {
      await plain.stop();
    }
  });
});

describe('helpers', () => {
  it('encodes the part after the project twice', () => {
    expect(harborRepositoryPath('library/nginx')).toEqual({ project: 'library', encoded: 'nginx' });
    expect(harborRepositoryPath('team/a/b')).toEqual({ project: 'team', encoded: 'a%252Fb' });
    expect(() => harborRepositoryPath('nginx')).toThrow(RegistryError);
  });
  it('maps types and times', () => {
    expect([harborKind('IMAGE'), harborKind('chart'), harborKind('CNAB'), harborKind('UNKNOWN'), harborKind(undefined)]).toEqual(['image', 'chart', 'artifact', 'artifact', undefined]);
    expect(harborTime('0001-01-01T00:00:00.000Z')).toBeUndefined();
    expect(harborTime('garbage')).toBeUndefined();
    expect(harborTime('2024-01-02T03:04:05Z')).toEqual(new Date('2024-01-02T03:04:05Z'));
  });
  it('follows Harbor Link headers (prev and next, host-relative, behind a path prefix)', () => {
    const cur = new URL('https://h.example/api/v2.0/projects?page=2&page_size=10');
    expect(nextLink(cur, '</api/v2.0/projects?page=1&page_size=10>; rel="prev" , </api/v2.0/projects?page=3&page_size=10>; rel="next"')?.href).toBe(
      'https://h.example/api/v2.0/projects?page=3&page_size=10',
    );
    expect(nextLink(cur, '</api/v2.0/projects?page=1&page_size=10>; rel="prev"')).toBeUndefined();
    expect(nextLink(cur, undefined)).toBeUndefined();
    const prefixed = new URL('https://h.example/harbor/api/v2.0/projects?page=1');
    expect(nextLink(prefixed, '</api/v2.0/projects?page=2>; rel="next"')?.href).toBe('https://h.example/harbor/api/v2.0/projects?page=2');
  });
});

describe('Harbor listing, one repository at a time (#14)', () => {
  it('reports a repository whose artifacts are refused as its own problem, skips one deleted meanwhile, and lists the rest', async () => {
    const stub = await startHarborStub({
      artifacts: [
        { repository: 'p/ok', digest: d('1'), tags: ['v1'] },
        { repository: 'p/locked', digest: d('2'), tags: ['v1'] },
        { repository: 'p/gone', digest: d('3'), tags: ['v1'] },
        { repository: 'p/after', digest: d('4'), tags: ['v1'] },
      ],
      artifactListingStatus: { 'p/locked': 403, 'p/gone': 404 },
    });
    try {
      const api = new HarborApi({ url: stub.url, registry: 'idc', retryDelayMs: 1 });
      const problems: string[] = [];
      const listed = await collect(api.listArtifacts({ onRepositoryProblem: (repo, message) => problems.push(`${repo}: ${message}`) }));
      expect(listed.map((a) => a.repository).sort()).toEqual(['p/after', 'p/ok']);
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(/^p\/locked: artifacts could not be listed: .*403/);
    } finally {
      await stub.close();
    }
  });
});

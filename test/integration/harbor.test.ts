// Harbor as a source (REST API listing: projects, nested repositories, labels, accessories, paging,
// ChartMuseum) and as a destination (projects created when missing), with a Harbor API stand-in in
// front of a real registry.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { Engine } from '../../src/engine/engine.js';
import { HarborProvider } from '../../src/providers/harbor.js';
import type { SourceArtifact } from '../../src/plan/types.js';
import { type HarborStub, startHarborStub } from '../helpers/harbor-stub.js';
import { type TestRegistry, buildImage, getManifest, listTags, pushImage, randomBlob, startRegistry } from '../helpers/index.js';

const robot = { username: 'robot$sync', password: 'robot-secret' };
let registry: TestRegistry;
let destination: TestRegistry;
let harbor: HarborStub;
const release = buildImage({ layers: [randomBlob(1000)] });
const dev = buildImage({ layers: [randomBlob(1000)] });
const nested = buildImage({ layers: [randomBlob(1000)] });
const signature = buildImage({ layers: [randomBlob(100)] });

beforeAll(async () => {
  [registry, destination] = await Promise.all([startRegistry({ auth: 'none' }), startRegistry({ auth: 'none' })]);
  await pushImage(registry, 'library/app', '1.0', release);
  await pushImage(registry, 'library/app', 'dev', dev);
  await pushImage(registry, 'team/a/b/tool', 'v1', nested);
  await pushImage(registry, 'team/untagged', release.digest, release);
  harbor = await startHarborStub({
    registryUrl: registry.url,
    users: { [robot.username]: robot.password },
    maxPageSize: 2,
    projects: [{ name: 'library', public: true }, { name: 'team' }, { name: 'empty' }],
    artifacts: [
      { repository: 'library/app', digest: release.digest, tags: ['1.0'], labels: ['release'], pushTime: '2024-05-01T00:00:00Z' },
      { repository: 'library/app', digest: dev.digest, tags: ['dev'], labels: [], pushTime: '2024-06-01T00:00:00Z' },
      { repository: 'library/app', digest: signature.digest, tags: [], accessoryOf: release.digest },
      { repository: 'team/a/b/tool', digest: nested.digest, tags: ['v1'], labels: ['release'] },
      { repository: 'team/untagged', digest: release.digest, tags: [] },
    ],
  });
});
afterAll(async () => {
  await harbor?.close();
  await Promise.all([registry?.stop(), destination?.stop()]);
});

function engine(rule: Record<string, unknown>, dest: Record<string, unknown> = { url: destination.url }): Engine {
  return new Engine(
    parseConfig({
      registries: { harbor: { url: harbor.url, kind: 'harbor', ...robot }, dst: dest },
      rules: [{ name: 'r', source: 'harbor', destination: 'dst', ...rule }],
    }),
    { stateDir: false },
  );
}

describe('Harbor as a source', () => {
  it('lists projects, nested repositories (double-encoded), tags, labels and push times through the API, without accessories', async () => {
    const e = engine({});
    try {
      const provider = e.provider('harbor') as HarborProvider;
      const listed: SourceArtifact[] = [];
      for await (const a of provider.listArtifacts()) listed.push(a);
      expect(listed.map((a) => `${a.repository}@${a.digest}:${a.tags.join(',')}`).sort()).toEqual(
        [`library/app@${release.digest}:1.0`, `library/app@${dev.digest}:dev`, `team/a/b/tool@${nested.digest}:v1`, `team/untagged@${release.digest}:`].sort(),
      );
      expect(listed.find((a) => a.tags[0] === '1.0')).toMatchObject({ labels: ['release'], kind: 'image' });
      expect(listed.find((a) => a.tags[0] === 'dev')!.tagPushedAt!.dev!.toISOString()).toBe('2024-06-01T00:00:00.000Z');
      // Paging was followed (2 items per page) and the robot's "$" survived Basic auth.
      expect(harbor.requests.some((r) => /page=2/.test(r.path))).toBe(true);
      expect(harbor.requests.some((r) => r.path.includes('team/repositories/a%252Fb%252Ftool/artifacts'))).toBe(true);
    } finally {
      await e.close();
    }
  });

  it('syncs by label with flattening, skipping untagged artifacts', async () => {
    const e = engine({ destinationNamespace: 'released', flatten: 'all', filters: { labels: ['release'] } });
    try {
      const report = await e.sync();
      expect(report.rules[0]!.artifacts.copied).toBe(2);
      expect((await getManifest(destination, 'released/app', '1.0'))?.digest).toBe(release.digest);
      expect((await getManifest(destination, 'released/tool', 'v1'))?.digest).toBe(nested.digest);
      expect(await listTags(destination, 'released/untagged')).toEqual([]);
      expect(await getManifest(destination, 'released/app', 'dev')).toBeNull();
    } finally {
      await e.close();
    }
  });

  it('pushes untagged artifacts by digest when asked', async () => {
    const e = engine({ destinationNamespace: 'all', filters: { repositories: ['team/untagged'], untagged: true } });
    try {
      const report = await e.sync();
      expect(report.rules[0]!.artifacts.copied).toBe(1);
      expect((await getManifest(destination, 'all/team/untagged', release.digest))?.digest).toBe(release.digest);
    } finally {
      await e.close();
    }
  });
});

describe('kind: harbor without the Harbor API', () => {
  it('falls back to the catalog', async () => {
    const e = new Engine(parseConfig({ registries: { h: { url: registry.url, kind: 'harbor' } } }), { stateDir: false });
    try {
      const repos = new Set<string>();
      for await (const a of e.provider('h').listArtifacts()) repos.add(a.repository);
      expect([...repos].sort()).toEqual(['library/app', 'team/a/b/tool']); // team/untagged has no tags to list
    } finally {
      await e.close();
    }
  });
});

describe('Harbor as a destination', () => {
  it('creates missing projects (private by default) once, then pushes', async () => {
    const target = await startHarborStub({ registryUrl: destination.url, users: { [robot.username]: robot.password }, projects: [] });
    const e = engine({ destinationNamespace: 'migrated', filters: { repositories: ['library/**'] } }, { url: target.url, kind: 'harbor', ...robot });
    try {
      const report = await e.sync();
      expect(report.rules[0]!.artifacts.copied).toBe(2);
      expect(target.projects.get('migrated')?.public).toBe(false);
      expect(target.requests.filter((r) => r.method === 'POST' && r.path === '/api/v2.0/projects')).toHaveLength(1);
      expect((await getManifest(destination, 'migrated/library/app', 'dev'))?.digest).toBe(dev.digest);
    } finally {
      await e.close();
      await target.close();
    }
  });
});

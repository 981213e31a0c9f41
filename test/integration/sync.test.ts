// The core against real registries (Debian docker-registry): full sync with digest equality, shared
// layers uploaded once and mounted elsewhere, reruns that copy nothing, auth failures, a lying
// source, redirects that must not leak Authorization, and per-artifact failures.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { FerryConfigInput } from '../../src/config/schema.js';
import { Engine, PreflightError } from '../../src/engine/engine.js';
import {
  type TestImage,
  type TestRegistry,
  buildArtifact,
  buildImage,
  buildIndex,
  getManifest,
  headBlob,
  listTags,
  pushImage,
  randomBlob,
  startProxy,
  startRedirectingRegistry,
  startRegistry,
} from '../helpers/index.js';

let source: TestRegistry;
/** One resume journal for the tests that build on each other (a later run mounts from earlier ones). */
const stateDir = mkdtempSync(join(tmpdir(), 'ferry-sync-state-'));
let destination: TestRegistry;
const base = [randomBlob(200_000), randomBlob(150_000)];
const images: Record<string, TestImage> = {};

function config(overrides: Partial<FerryConfigInput> & { rule?: Record<string, unknown> } = {}) {
  const { rule, ...rest } = overrides;
  return parseConfig({
    registries: {
      src: { url: source.url },
      dst: { url: destination.url, username: 'ferry', password: 's3cret' },
    },
    transfer: { concurrency: 4, retries: 1 },
    rules: [{ name: 'all', source: 'src', destination: 'dst', destinationNamespace: 'mirror', ...rule }],
    ...rest,
  });
}

beforeAll(async () => {
  [source, destination] = await Promise.all([startRegistry({ auth: 'none' }), startRegistry({ auth: 'token' })]);
  images.app10 = buildImage({ layers: [...base, randomBlob(50_000)], format: 'docker' });
  images.app11 = buildImage({ layers: [...base, randomBlob(60_000)], format: 'docker' });
  images.svc = buildImage({ layers: [...base, randomBlob(70_000)], format: 'oci' });
  const amd = buildImage({ layers: [...base, randomBlob(30_000)], format: 'oci', platform: { os: 'linux', architecture: 'amd64' } });
  const arm = buildImage({ layers: [...base, randomBlob(30_000)], format: 'oci', platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
  const damd = buildImage({ layers: [randomBlob(20_000)], format: 'docker', platform: { os: 'linux', architecture: 'amd64' } });
  const darm = buildImage({ layers: [randomBlob(20_000)], format: 'docker', platform: { os: 'linux', architecture: 'arm', variant: 'v7' } });
  images.multi = buildIndex([amd, arm], 'oci') as unknown as TestImage;
  images.dlist = buildIndex([damd, darm], 'docker') as unknown as TestImage;
  images.chart = buildArtifact('application/vnd.cncf.helm.config.v1+json', [
    { mediaType: 'application/vnd.cncf.helm.chart.content.v1.tar+gzip', bytes: randomBlob(5_000) },
  ]) as unknown as TestImage;
  await pushImage(source, 'library/app', '1.0', images.app10);
  await pushImage(source, 'library/app', '1.1', images.app11);
  await pushImage(source, 'team/tools/svc', 'v1', images.svc);
  await pushImage(source, 'library/multi', '2.0', images.multi);
  await pushImage(source, 'library/dlist', '1', images.dlist);
  await pushImage(source, 'charts/demo', '0.1.0', images.chart);
}, 120_000);

afterAll(async () => {
  await Promise.all([source?.stop(), destination?.stop()]);
});

const expected = [
  ['library/app', '1.0', 'mirror/library/app'],
  ['library/app', '1.1', 'mirror/library/app'],
  ['team/tools/svc', 'v1', 'mirror/team/tools/svc'],
  ['library/multi', '2.0', 'mirror/library/multi'],
  ['library/dlist', '1', 'mirror/library/dlist'],
  ['charts/demo', '0.1.0', 'mirror/charts/demo'],
] as const;

describe('ferry sync against real registries', () => {
  it('copies every artifact with identical digests, uploading shared layers once', async () => {
    const engine = new Engine(config(), { stateDir });
    destination.issuer!.requests.length = 0;
    try {
      const report = await engine.sync();
      // Tokens are cached per scope set: never fetched twice for the same scopes within their lifetime.
      const fetched = destination.issuer!.requests.filter((r) => r.userAgent?.startsWith('ferry/')).map((r) => [...r.scopes].sort().join(' '));
      expect(fetched.length).toBeGreaterThan(0);
      expect(fetched.length).toBe(new Set(fetched).size);
      const rule = report.rules[0]!;
      expect(rule.items.filter((i) => i.status === 'failed')).toEqual([]);
      expect(rule.artifacts.copied).toBe(expected.length);
      for (const [repo, tag, dst] of expected) {
        const a = await getManifest(source, repo, tag);
        const b = await getManifest(destination, dst, tag);
        expect(b?.digest, `${dst}:${tag}`).toBe(a!.digest);
        expect(b!.bytes.equals(a!.bytes)).toBe(true);
      }
      // The two base layers are in every image of three repositories, plus four platform images:
      // each is uploaded once and mounted into the other repositories.
      const uploadedBase = rule.blobs.uploaded;
      expect(rule.blobs.mounted).toBeGreaterThanOrEqual(2 * 2);
      const distinct = new Set<string>();
      for (const img of [images.app10, images.app11, images.svc]) for (const d of img!.blobs.keys()) distinct.add(d);
      expect(uploadedBase).toBeLessThan(distinct.size + 20);
      // Index children are pushed too.
      expect(await headBlob(destination, 'mirror/library/app', images.app10!.layers[0]!.digest)).toBe(true);
      expect(report.status).toBe('ok');
    } finally {
      await engine.close();
    }
  });

  it('copies nothing on a rerun', async () => {
    const engine = new Engine(config(), { stateDir: false });
    try {
      const report = await engine.sync();
      const rule = report.rules[0]!;
      expect(rule.artifacts.present).toBe(expected.length);
      expect(rule.artifacts.copied).toBe(0);
      expect(rule.blobs.uploaded).toBe(0);
      expect(rule.bytes).toBe(0);
    } finally {
      await engine.close();
    }
  });

  it('flattens every level with flatten: all', async () => {
    const engine = new Engine(config({ rule: { destinationNamespace: 'flat', flatten: 'all', filters: { repositories: ['team/**'] } } }), { stateDir });
    try {
      const report = await engine.sync();
      expect(report.rules[0]!.artifacts.copied).toBe(1);
      expect(await listTags(destination, 'flat/svc')).toEqual(['v1']);
      // The journal of the first run knows where every blob landed: all mounted, none uploaded.
      expect(report.rules[0]!.blobs.uploaded).toBe(0);
      expect(report.rules[0]!.blobs.mounted).toBe(images.svc!.blobs.size);
    } finally {
      await engine.close();
    }
  });

  it('stops before copying when the destination refuses the credentials', async () => {
    const cfg = config();
    cfg.registries.dst!.password = 'wrong';
    const engine = new Engine(cfg, { stateDir: false });
    try {
      await expect(engine.sync()).rejects.toSatisfy((e: unknown) => e instanceof PreflightError && /dst: .*(refused|authentication)/.test(e.message));
    } finally {
      await engine.close();
    }
  });

  it('reports an unreachable registry by name', async () => {
    const cfg = config();
    cfg.registries.src!.url = 'http://127.0.0.1:9';
    const engine = new Engine(cfg, { stateDir: false });
    try {
      await expect(engine.sync()).rejects.toSatisfy((e: unknown) => e instanceof PreflightError && /src: .*cannot reach/.test(e.message));
    } finally {
      await engine.close();
    }
  });

  it('never pushes content from a lying source, and copies the rest', async () => {
    const liar = await startProxy(source.url, { flipByteInBlobs: true });
    const cfg = config({ rule: { destinationNamespace: 'lies', filters: { repositories: ['library/app'] } } });
    cfg.registries.src!.url = liar.url;
    const engine = new Engine(cfg, { stateDir: false });
    try {
      const report = await engine.sync();
      const rule = report.rules[0]!;
      // Shared layers would mount from elsewhere, so the new namespace still needs the fresh layers:
      // every artifact whose blobs cross the proxy fails with a digest mismatch.
      const failed = rule.items.filter((i) => i.status === 'failed');
      expect(failed.length).toBeGreaterThan(0);
      for (const f of failed) expect(f.reason).toMatch(/digest mismatch/);
      for (const f of failed) {
        const tag = f.tags[0]!;
        expect(await getManifest(destination, 'lies/library/app', tag)).toBeNull();
      }
      const unique = images.app10!.layers[2]!.digest;
      expect(await headBlob(destination, 'lies/library/app', unique)).toBe(false);
    } finally {
      await engine.close();
      await liar.stop();
    }
  });

  it('follows blob redirects without sending the registry credentials to the other host', async () => {
    const authSource = await startRegistry({ auth: 'basic' });
    await pushImage(authSource, 'redir/img', '1', images.svc!);
    const redirecting = await startRedirectingRegistry(authSource.url);
    const cfg = config({ rule: { destinationNamespace: 'redirected' } });
    cfg.registries.src = { ...cfg.registries.src!, url: redirecting.url, username: 'ferry', password: 's3cret' };
    const engine = new Engine(cfg, { stateDir: false });
    try {
      const report = await engine.sync();
      expect(report.rules[0]!.artifacts.copied + report.rules[0]!.artifacts.present).toBe(1);
      expect(redirecting.redirects).toBeGreaterThan(0);
      expect(redirecting.authorizationSeenByOtherHost).toBe(false);
      expect((await getManifest(destination, 'redirected/redir/img', '1'))?.digest).toBe(images.svc!.digest);
    } finally {
      await engine.close();
      await redirecting.stop();
      await authSource.stop();
    }
  });
});

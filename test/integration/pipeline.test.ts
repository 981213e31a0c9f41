// The streaming pipeline (#11 item 1) and the listing's tolerance (#14) against real registries:
// a repository the listing cannot read is that repository's problem, the bounded report keeps a
// sample and the artifact log keeps every result, and known-empty destinations get no HEADs.
import { readFileSync } from 'node:fs';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { Engine } from '../../src/engine/engine.js';
import { RuleStats } from '../../src/transfer/stats.js';
import { type TestProxy, type TestRegistry, buildImage, listTags, pushImage, randomBlob, startProxy, startRegistry } from '../helpers/index.js';
import { tempDir, transferConfig } from './transfer-fixtures.js';

let source: TestRegistry;
let destination: TestRegistry;

beforeAll(async () => {
  [source, destination] = await Promise.all([startRegistry({ auth: 'none' }), startRegistry({ auth: 'none' })]);
  const img = buildImage({ layers: [randomBlob(700)] });
  for (const repo of ['tol/a', 'tol/gone', 'tol/denied', 'tol/z']) await pushImage(source, repo, '1.0', img);
});
afterAll(async () => Promise.all([source?.stop(), destination?.stop()]));

/** A front that adds a name to the catalog that no registry would accept, and forwards the rest. */
async function catalogWithInvalidName(target: string): Promise<{ url: string; stop(): Promise<void> }> {
  const server: Server = createServer(async (req, res) => {
    const upstream = await request(new URL(req.url ?? '/', target), { method: req.method as 'GET', headers: { accept: req.headers.accept ?? '*/*' } });
    const body = Buffer.from(await upstream.body.arrayBuffer());
    if ((req.url ?? '').startsWith('/v2/_catalog')) {
      const json = JSON.parse(body.toString('utf8')) as { repositories: string[] };
      json.repositories.splice(1, 0, 'tol/Not_Valid');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(json));
      return;
    }
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(upstream.headers)) if (typeof v === 'string' && k !== 'transfer-encoding' && k !== 'connection') headers[k] = v;
    res.writeHead(upstream.statusCode, headers);
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    stop: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

describe('listing tolerance', () => {
  let front: { url: string; stop(): Promise<void> } | undefined;
  let proxy: TestProxy | undefined;
  afterAll(async () => {
    await proxy?.stop();
    await front?.stop();
  });

  it('reports an invalid catalog name, a repository gone mid-listing and one refused as problems of those repositories; the others are copied', async () => {
    front = await catalogWithInvalidName(source.url);
    proxy = await startProxy(front.url, {
      statusSequence: [
        // deleted between the catalog and its tags
        { match: /^GET \/v2\/tol\/gone\/tags\/list/, statuses: [404] },
        // access refused to this one repository
        { match: /^GET \/v2\/tol\/denied\/tags\/list/, statuses: [403] },
      ],
    });
    const engine = new Engine(transferConfig({ source: { url: proxy.url }, destination: { url: destination.url }, rule: { destinationNamespace: 'tol-copy' } }), { stateDir: false });
    try {
      const report = (await engine.sync()).rules[0]!;
      expect(report.status).toBe('partial');
      expect(report.error).toBeUndefined();
      expect(report.artifacts.copied).toBe(2);
      expect(report.problems.map((p) => p.sourceRepository).sort()).toEqual(['tol/Not_Valid', 'tol/denied']);
      expect(report.problems.find((p) => p.sourceRepository === 'tol/Not_Valid')!.message).toMatch(/not a valid repository name/);
      expect(report.problems.find((p) => p.sourceRepository === 'tol/denied')!.message).toMatch(/tags could not be listed.*403/);
      expect(await listTags(destination, 'tol-copy/tol/a')).toEqual(['1.0']);
      expect(await listTags(destination, 'tol-copy/tol/z')).toEqual(['1.0']);
      // a repository gone mid-listing has nothing to copy: not a failure of anything
      expect(await listTags(destination, 'tol-copy/tol/gone')).toEqual([]);
    } finally {
      await engine.close();
    }
  });
});

describe('bounded report and artifact log', () => {
  it('keeps every failure up to a cap and a capped sample of the rest, counting what it left out', () => {
    const stats = new RuleStats('r', undefined, undefined, { failures: 2, others: 1 });
    for (let i = 0; i < 3; i++) stats.addArtifact({ source: `s${i}`, destination: 'd', status: 'failed', tags: [] });
    for (let i = 0; i < 4; i++) stats.addArtifact({ source: `c${i}`, destination: 'd', status: 'copied', tags: [], referrers: 1 });
    expect(stats.artifacts.map((a) => a.source)).toEqual(['s0', 's1', 'c0']);
    expect(stats.omitted).toEqual({ failed: 1, other: 3 });
    expect(stats.count('failed')).toBe(3);
    expect(stats.count('copied')).toBe(4);
    expect(stats.referrers).toBe(4);
  });

  it('writes one JSON line per artifact into the state directory and names the file in the report', async () => {
    const img = buildImage({ layers: [randomBlob(500)] });
    for (const tag of ['1', '2', '3']) await pushImage(source, 'log/app', tag, img);
    const stateDir = tempDir('ferry-pipeline-');
    const engine = new Engine(transferConfig({ source: { url: source.url }, destination: { url: destination.url }, rule: { filters: { repositories: ['log/**'] } } }), { stateDir });
    try {
      const report = (await engine.sync()).rules[0]!;
      expect(report.status).toBe('ok');
      expect(report.artifactLog).toContain(stateDir);
      const lines = readFileSync(report.artifactLog!, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { status: string; tags: string[] });
      expect(lines.map((l) => `${l.status} ${l.tags.join(',')}`).sort()).toEqual(['copied 1', 'copied 2', 'copied 3']);
    } finally {
      await engine.close();
    }
  });
});

describe('requests a run can skip', () => {
  let proxy: TestProxy | undefined;
  afterAll(async () => proxy?.stop());

  it('asks an empty destination repository once (tags/list) and sends no HEADs into it; a rerun HEADs each listed tag once', async () => {
    const img = buildImage({ layers: [randomBlob(900), randomBlob(300)] });
    for (const tag of ['a', 'b']) await pushImage(source, 'skip/app', tag, img);
    proxy = await startProxy(destination.url);
    const config = transferConfig({ source: { url: source.url }, destination: { url: proxy.url }, rule: { filters: { repositories: ['skip/**'] } } });
    const first = new Engine(config, { stateDir: false });
    try {
      const report = (await first.sync()).rules[0]!;
      expect(report.artifacts.copied).toBe(2);
    } finally {
      await first.close();
    }
    expect(proxy.count(/^GET \/v2\/skip\/app\/tags\/list/)).toBe(1);
    expect(proxy.count(/^HEAD /)).toBe(0);
    proxy.resetStats();
    const again = new Engine(config, { stateDir: false });
    try {
      const report = (await again.sync()).rules[0]!;
      expect(report.artifacts.present).toBe(2);
      // the report says how many requests each registry received in this run
      const total = (kinds: Record<string, number> | undefined) => Object.values(kinds ?? {}).reduce((a, b) => a + b, 0);
      expect(Object.keys(report.requests ?? {}).sort()).toEqual(['dst', 'src']);
      expect(total(report.requests!.dst)).toBe(proxy.requests.filter((r) => r.path !== '/v2/').length); // the preflight ping came before the run
    } finally {
      await again.close();
    }
    expect(proxy.count(/^HEAD \/v2\/skip\/app\/manifests\//)).toBe(2);
    expect(proxy.count(/^HEAD \/v2\/skip\/app\/blobs\//)).toBe(0);
  });
});

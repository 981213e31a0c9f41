// Helm charts and other OCI artifacts against real registries: OCI charts and custom artifacts copy
// byte for byte; ChartMuseum charts (Harbor <= 2.7, through the Harbor stand-in) are downloaded with
// the source's credentials, converted as `helm push` would, and must pull back as charts; broken
// archives fail alone; reruns find the same digests.
import { gunzipSync, gzipSync } from 'node:zlib';
import tarStream from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { Engine } from '../../src/engine/engine.js';
import { formatTextReport } from '../../src/engine/report.js';
import { type HarborStub, startHarborStub } from '../helpers/harbor-stub.js';
import {
  MT,
  type TestRegistry,
  buildArtifact,
  buildHelmChart,
  getBlob,
  getManifest,
  headBlob,
  pushImage,
  randomBlob,
  sha256,
  startRegistry,
} from '../helpers/index.js';

let source: TestRegistry;
let destination: TestRegistry;
let harborRegistry: TestRegistry;
let harbor: HarborStub;
const admin = { username: 'admin', password: 'Harbor12345' };

async function run(config: Record<string, unknown>, opts: { dryRun?: boolean } = {}) {
  const e = new Engine(parseConfig(config), { stateDir: false });
  try {
    return await e.sync(opts);
  } finally {
    await e.close();
  }
}

/** A chart archive as `helm package` writes it. */
async function chartTgz(dir: string, chartYaml: string, extra: { name: string; data: string }[] = []): Promise<Buffer> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c: unknown) => chunks.push(c as Buffer));
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  const mtime = new Date('2023-05-06T07:08:09Z');
  pack.entry({ name: `${dir}/Chart.yaml`, mtime }, chartYaml);
  pack.entry({ name: `${dir}/values.yaml`, mtime }, 'replicaCount: 1\n');
  for (const f of extra) pack.entry({ name: `${dir}/${f.name}`, mtime }, f.data);
  pack.finalize();
  await done;
  return gzipSync(Buffer.concat(chunks));
}

/** Files of a .tgz, read with tar-stream directly (independently of Ferry). */
async function untar(tgz: Buffer): Promise<Map<string, string>> {
  const extract = tarStream.extract();
  const files = new Map<string, string>();
  const reading = (async () => {
    for await (const entry of extract) {
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      files.set(entry.header.name, Buffer.concat(chunks).toString('utf8'));
    }
  })();
  extract.end(gunzipSync(tgz));
  await reading;
  return files;
}

beforeAll(async () => {
  [source, destination, harborRegistry] = await Promise.all([startRegistry(), startRegistry({ auth: 'token' }), startRegistry()]);
}, 60_000);

afterAll(async () => {
  await harbor?.close();
  await Promise.all([source?.stop(), destination?.stop(), harborRegistry?.stop()]);
});

describe('OCI charts and other OCI artifacts', () => {
  const chart = buildHelmChart({ name: 'nginx', version: '1.2.3+up1', appVersion: '1.25.0' });
  const custom = buildArtifact('application/vnd.example.config.v1+json', [{ mediaType: 'application/vnd.example.data.v1.tar', bytes: randomBlob(4096), annotations: { 'org.opencontainers.image.title': 'data.tar' } }], {
    configBytes: Buffer.from('{"kind":"example","n":1}'),
    artifactType: 'application/vnd.example.thing.v1',
    annotations: { 'org.opencontainers.image.created': '2024-02-03T04:05:06Z' },
  });
  const empty = buildArtifact(MT.ociEmpty, [{ mediaType: 'application/vnd.wasm.content.layer.v1+wasm', bytes: randomBlob(2048) }], { artifactType: 'application/vnd.wasm.config.v0+json' });

  beforeAll(async () => {
    await pushImage(source, 'charts/nginx', chart.tag, chart);
    await pushImage(source, 'artifacts/custom', 'v1', custom);
    await pushImage(source, 'artifacts/wasm', 'v1', empty);
  });

  it('copies them byte for byte, digests equal, with their kinds in the report', async () => {
    const report = await run({
      registries: { src: { url: source.url }, dst: { url: destination.url, username: 'ferry', password: 's3cret' } },
      rules: [{ name: 'oci', source: 'src', destination: 'dst', destinationNamespace: 'oci', filters: { repositories: ['charts/**', 'artifacts/**'] } }],
    });
    const rule = report.rules[0]!;
    expect(rule.status).toBe('ok');
    expect(rule.items.map((i) => [i.sourceRepository, i.kind, i.status, i.destinationDigest]).sort()).toEqual([
      ['artifacts/custom', 'artifact', 'copied', undefined],
      ['artifacts/wasm', 'artifact', 'copied', undefined],
      ['charts/nginx', 'chart', 'copied', undefined],
    ]);
    for (const [repo, tag, content] of [['charts/nginx', chart.tag, chart], ['artifacts/custom', 'v1', custom], ['artifacts/wasm', 'v1', empty]] as const) {
      const m = (await getManifest(destination, `oci/${repo}`, tag))!;
      expect(m.digest).toBe(content.digest);
      expect(m.bytes.equals(content.manifest)).toBe(true);
      for (const [digest] of content.blobs) expect(await headBlob(destination, `oci/${repo}`, digest)).toBe(true);
    }
    // helm writes no mediaType field; it stays that way.
    expect(JSON.parse((await getManifest(destination, 'oci/charts/nginx', '1.2.3_up1'))!.bytes.toString('utf8')).mediaType).toBeUndefined();
  });

  it('selects charts alone with filters.kinds', async () => {
    const report = await run({
      registries: { src: { url: source.url }, dst: { url: destination.url, username: 'ferry', password: 's3cret' } },
      rules: [{ name: 'charts', source: 'src', destination: 'dst', destinationNamespace: 'kinds', filters: { repositories: ['charts/**', 'artifacts/**'], kinds: ['chart'] } }],
    });
    const items = report.rules[0]!.items;
    expect(items.filter((i) => i.status === 'copied').map((i) => i.sourceRepository)).toEqual(['charts/nginx']);
    expect(items.filter((i) => i.status === 'skipped')).toHaveLength(2);
  });
});

describe('ChartMuseum charts (Harbor <= 2.7)', () => {
  let demo: Buffer;
  let demoBuild: Buffer;
  const prov = Buffer.from('-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nname: demo\n...\n-----END PGP SIGNATURE-----\n');
  const demoYaml = 'apiVersion: v2\nname: demo\nversion: 0.1.0\ndescription: Demo chart\nappVersion: "2.0"\nhome: https://example.com\nmaintainers:\n  - name: Ops\n    email: ops@example.com\n';

  const config = () => ({
    registries: {
      harbor: { url: harbor.url, kind: 'harbor', ...admin },
      dst: { url: destination.url, username: 'ferry', password: 's3cret' },
    },
    transfer: { retries: 0 },
    rules: [{ name: 'cm', source: 'harbor', destination: 'dst', destinationNamespace: 'helm', filters: { kinds: ['chart'] } }],
  });

  beforeAll(async () => {
    demo = await chartTgz('demo', demoYaml, [{ name: 'templates/cm.yaml', data: 'kind: ConfigMap\n' }]);
    demoBuild = await chartTgz('demo', 'apiVersion: v2\nname: demo\nversion: 1.0.0+build.5\n');
    const noVersion = await chartTgz('nover', 'apiVersion: v2\nname: nover\ndescription: forgot the version\n');
    harbor = await startHarborStub({
      registryUrl: harborRegistry.url,
      users: { [admin.username]: admin.password },
      projects: [{ name: 'library' }],
      charts: [
        { project: 'library', name: 'demo', version: '0.1.0', content: demo, prov },
        { project: 'library', name: 'demo', version: '1.0.0+build.5', content: demoBuild },
        { project: 'library', name: 'broken', version: '1.0.0', content: randomBlob(3000) },
        { project: 'library', name: 'nover', version: '0.0.1', content: noVersion },
      ],
    });
  });

  it('plans them in a dry run without touching the destination', async () => {
    const report = await run(config(), { dryRun: true });
    expect(report.rules[0]!.plan!.map((p) => [p.destination, p.action]).sort()).toEqual([
      [`dst/helm/library/broken:1.0.0`, 'copy'],
      [`dst/helm/library/demo:0.1.0`, 'copy'],
      [`dst/helm/library/demo:1.0.0_build.5`, 'copy'],
      [`dst/helm/library/nover:0.0.1`, 'copy'],
    ]);
  });

  it("converts each chart as helm push would, with the source's credentials; a broken chart fails alone", async () => {
    const report = await run(config());
    const rule = report.rules[0]!;
    expect(rule.status).toBe('partial');
    const byRepo = (repo: string, tag: string) => rule.items.find((i) => i.sourceRepository === repo && i.tags[0] === tag)!;
    expect(byRepo('library/demo', '0.1.0')).toMatchObject({ status: 'copied', kind: 'chart' });
    expect(byRepo('library/demo', '1.0.0_build.5')).toMatchObject({ status: 'copied', kind: 'chart' });
    expect(byRepo('library/broken', '1.0.0')).toMatchObject({ status: 'failed' });
    expect(byRepo('library/broken', '1.0.0').reason).toMatch(/ChartMuseum chart broken-1\.0\.0\.tgz: corrupt chart archive/);
    expect(byRepo('library/nover', '0.0.1').reason).toMatch(/ChartMuseum chart nover-0\.0\.1\.tgz: Chart\.yaml of nover has no version/);
    expect(formatTextReport(report)).toMatch(/FAILED harbor\/library\/broken:1\.0\.0 \(ChartMuseum\) -> dst\/helm\/library\/broken: ChartMuseum chart broken-1\.0\.0\.tgz: corrupt/);
    // Downloaded with the Harbor credentials (Basic), .tgz and .prov.
    const downloads = harbor.requests.filter((r) => r.path.startsWith('/chartrepo/library/charts/demo-0.1.0.tgz') && r.status === 200);
    expect(downloads.map((r) => r.user)).toContain('admin');

    // Pull it back as helm would: manifest → config → chart layer.
    const m = (await getManifest(destination, 'helm/library/demo', '0.1.0'))!;
    expect(m.mediaType).toBe(MT.ociManifest);
    expect(byRepo('library/demo', '0.1.0').digest).toBe(m.digest);
    const manifest = JSON.parse(m.bytes.toString('utf8')) as { schemaVersion: number; mediaType?: string; config: { mediaType: string; digest: string }; layers: { mediaType: string; digest: string; size: number }[]; annotations: Record<string, string> };
    expect(manifest.schemaVersion).toBe(2);
    expect(manifest.mediaType).toBeUndefined();
    expect(manifest.config.mediaType).toBe(MT.helmConfig);
    expect(JSON.parse((await getBlob(destination, 'helm/library/demo', manifest.config.digest))!.toString('utf8'))).toEqual({
      name: 'demo',
      home: 'https://example.com',
      version: '0.1.0',
      description: 'Demo chart',
      maintainers: [{ name: 'Ops', email: 'ops@example.com' }],
      apiVersion: 'v2',
      appVersion: '2.0',
    });
    expect(manifest.layers.map((l) => l.mediaType).sort()).toEqual([MT.helmChart, MT.helmProvenance].sort());
    expect(manifest.layers.map((l) => l.digest)).toEqual(manifest.layers.map((l) => l.digest).sort());
    const chartLayer = manifest.layers.find((l) => l.mediaType === MT.helmChart)!;
    expect(chartLayer.digest).toBe(sha256(demo));
    const layerBytes = (await getBlob(destination, 'helm/library/demo', chartLayer.digest))!;
    expect(layerBytes.equals(demo)).toBe(true);
    const files = await untar(layerBytes);
    expect(files.get('demo/Chart.yaml')).toBe(demoYaml);
    const provLayer = manifest.layers.find((l) => l.mediaType === MT.helmProvenance)!;
    expect((await getBlob(destination, 'helm/library/demo', provLayer.digest))!.equals(prov)).toBe(true);
    expect(manifest.annotations).toEqual({
      'org.opencontainers.image.authors': 'Ops (ops@example.com)',
      'org.opencontainers.image.created': '2023-05-06T07:08:09Z',
      'org.opencontainers.image.description': 'Demo chart',
      'org.opencontainers.image.title': 'demo',
      'org.opencontainers.image.url': 'https://example.com',
      'org.opencontainers.image.version': '0.1.0',
    });

    // "+" in the version: tag with "_", the annotation keeps the real version.
    const build = JSON.parse((await getManifest(destination, 'helm/library/demo', '1.0.0_build.5'))!.bytes.toString('utf8')) as { layers: unknown[]; annotations: Record<string, string> };
    expect(build.annotations['org.opencontainers.image.version']).toBe('1.0.0+build.5');
    expect(build.layers).toHaveLength(1);
  });

  it('finds the same digests on a rerun (deterministic conversion): nothing pushed', async () => {
    const report = await run(config());
    const rule = report.rules[0]!;
    expect(rule.items.filter((i) => i.status === 'present').map((i) => i.tags[0]).sort()).toEqual(['0.1.0', '1.0.0_build.5']);
    expect(rule.blobs.uploaded).toBe(0);
    expect(rule.artifacts.failed).toBe(2);
  });

  it("pushes the converted blobs through the blob queue: a chart's blobs cross the wire once, other repositories mount them", async () => {
    const cfg = config();
    const rules = ['one', 'two'].map((ns) => ({ ...cfg.rules[0]!, name: `cm-${ns}`, destinationNamespace: `queue-${ns}`, filters: { kinds: ['chart'], repositories: ['library/demo'] } }));
    const report = await run({ ...cfg, rules });
    expect(report.totals.artifacts.copied).toBe(4);
    // demo 0.1.0: config, chart, provenance; demo 1.0.0+build.5: config, chart. Each distinct blob is
    // uploaded once; the other rule's repository mounts it (the old chart push uploaded it twice).
    expect(report.totals.blobs.uploaded).toBe(5);
    expect(report.totals.blobs.mounted).toBe(5);
    for (const ns of ['one', 'two']) expect((await getManifest(destination, `queue-${ns}/library/demo`, '0.1.0'))?.mediaType).toBe(MT.ociManifest);
  });

  it('reports a refused download for that chart only', async () => {
    harbor.inject(/^\/chartrepo\/library\/charts\/demo-0\.1\.0\.tgz$/, 403, { times: 5 });
    const cfg = config();
    const report = await run({ ...cfg, rules: [{ ...cfg.rules[0]!, destinationNamespace: 'denied' }] });
    const items = report.rules[0]!.items;
    expect(items.find((i) => i.tags[0] === '0.1.0')!.reason).toMatch(/download \/chartrepo\/library\/charts\/demo-0\.1\.0\.tgz: permission denied \(HTTP 403\)/);
    expect(items.find((i) => i.tags[0] === '1.0.0_build.5')).toMatchObject({ status: 'copied' });
  });
});

// ChartMuseum → OCI chart conversion without registries: Chart.yaml read from the archive stream,
// helm's metadata JSON (field set, order, omitempty, Go escaping), helm's manifest and annotations,
// determinism, and the failures that must name the chart's problem.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import tarStream from 'tar-stream';
import { describe, expect, it, vi } from 'vitest';
import { readChartArchive } from '../../src/transfer/chart-archive.js';
import { ChartError, chartMetadata } from '../../src/transfer/chart-metadata.js';
import { buildHelmOciChart, chartTag, goJson } from '../../src/transfer/helm-oci.js';

/** A chart .tgz as `helm package` writes it: <name>/Chart.yaml first, then the rest. */
async function tgz(files: { name: string; data: string | Buffer; mtime?: Date }[]): Promise<Buffer> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c: unknown) => chunks.push(c as Buffer));
    pack.on('end', () => resolve());
    pack.on('error', reject);
  });
  for (const f of files) pack.entry({ name: f.name, mtime: f.mtime ?? new Date('2023-03-04T05:06:07Z'), mode: 0o644 }, f.data);
  pack.finalize();
  await done;
  return gzipSync(Buffer.concat(chunks));
}

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

const FULL_CHART_YAML = `
apiVersion: v2
name: demo
version: 1.2.3+build.1
kubeVersion: ">=1.20"
description: a <demo> & co
type: application
keywords: [web, "db"]
home: https://example.com/demo
sources:
  - https://github.com/example/demo
  - https://github.com/example/other
maintainers:
  - name: Jo
    email: jo@example.com
  - name: Al
icon: https://example.com/icon.png
appVersion: 1.10
deprecated: false
annotations:
  zeta: last
  alpha: first
  org.opencontainers.image.title: not-the-title
  org.opencontainers.image.description: from annotations
dependencies:
  - name: redis
    version: 17.x
    repository: https://charts.example.com
    condition: redis.enabled
    import-values:
      - child: a
        parent: b
      - data
  - name: local
unknownField: ignored
`;

describe('Chart.yaml → helm metadata', () => {
  it('uses helm chart.Metadata field order, omits empty fields and escapes like Go', () => {
    const meta = chartMetadata(Buffer.from(FULL_CHART_YAML));
    expect(Object.keys(meta)).toEqual(['name', 'home', 'sources', 'version', 'description', 'keywords', 'maintainers', 'icon', 'apiVersion', 'appVersion', 'annotations', 'kubeVersion', 'dependencies', 'type']);
    expect(goJson(meta)).toBe(
      '{"name":"demo","home":"https://example.com/demo","sources":["https://github.com/example/demo","https://github.com/example/other"],"version":"1.2.3+build.1",' +
        '"description":"a \\u003cdemo\\u003e \\u0026 co","keywords":["web","db"],"maintainers":[{"name":"Jo","email":"jo@example.com"},{"name":"Al"}],' +
        '"icon":"https://example.com/icon.png","apiVersion":"v2","appVersion":"1.1",' +
        '"annotations":{"alpha":"first","org.opencontainers.image.description":"from annotations","org.opencontainers.image.title":"not-the-title","zeta":"last"},' +
        '"kubeVersion":"\\u003e=1.20","dependencies":[{"name":"redis","version":"17.x","repository":"https://charts.example.com","condition":"redis.enabled",' +
        '"import-values":[{"child":"a","parent":"b"},"data"]},{"name":"local","repository":""}],"type":"application"}',
    );
  });

  it('defaults apiVersion to v1 and reads requirements.yaml dependencies, as helm loader does', () => {
    const meta = chartMetadata(Buffer.from('name: old\nversion: 0.1.0\ndeprecated: true\n'), Buffer.from('dependencies:\n- name: mysql\n  version: 1.0.0\n  repository: "@stable"\n'));
    expect(meta).toEqual({ name: 'old', version: '0.1.0', apiVersion: 'v1', deprecated: true, dependencies: [{ name: 'mysql', version: '1.0.0', repository: '@stable' }] });
  });

  it('sanitizes strings as chart.Metadata.Validate does', () => {
    expect(chartMetadata(Buffer.from('apiVersion: v2\nname: x\nversion: 1.0.0\ndescription: "two\\tparts\\u0007"\n')).description).toBe('two parts');
  });

  it.each([
    ['version: 1.0.0\n', /has no name/],
    ['name: x\n', /x has no version/],
    ['name: x\nversion: ""\n', /x has no version/],
    ['name: a/b\nversion: 1.0.0\n', /name "a\/b" is invalid/],
    ['name: x\nversion: 1.0.0\ntype: plugin\n', /type must be application or library/],
    ['name: x\nversion: 1.0.0\nsources: https://a\n', /sources must be a list/],
    ['name: [x\n', /cannot load Chart.yaml/],
  ])('refuses %j', (yaml, message) => {
    expect(() => chartMetadata(Buffer.from(yaml))).toThrow(ChartError);
    expect(() => chartMetadata(Buffer.from(yaml))).toThrow(message);
  });
});

describe('reading a chart archive as a stream', () => {
  it('finds <top>/Chart.yaml (not a subchart\'s), hashes the exact bytes and takes Chart.yaml\'s mtime', async () => {
    const archive = await tgz([
      { name: 'demo/Chart.yaml', data: 'apiVersion: v2\nname: demo\nversion: 0.1.0\n', mtime: new Date('2022-02-02T02:02:02Z') },
      { name: 'demo/values.yaml', data: 'replicas: 1\n' },
      { name: 'demo/charts/sub/Chart.yaml', data: 'apiVersion: v2\nname: sub\nversion: 9.9.9\n' },
      { name: 'demo/templates/deploy.yaml', data: Buffer.alloc(100_000, 'x') },
    ]);
    // Fed in small pieces, as a download arrives.
    const pieces = Array.from({ length: Math.ceil(archive.length / 512) }, (_, i) => archive.subarray(i * 512, (i + 1) * 512));
    const chart = await readChartArchive(Readable.from(pieces));
    expect(chart.bytes.equals(archive)).toBe(true);
    expect(chart.digest).toBe(sha(archive));
    expect(chart.metadata).toEqual({ name: 'demo', version: '0.1.0', apiVersion: 'v2' });
    expect(chart.created).toBe('2022-02-02T02:02:02Z');
  });

  it('fails a truncated archive, a non-gzip file, an archive without Chart.yaml, and one over the size limit', async () => {
    const good = await tgz([{ name: 'demo/Chart.yaml', data: 'apiVersion: v2\nname: demo\nversion: 0.1.0\n' }, { name: 'demo/big', data: Buffer.alloc(50_000, 7) }]);
    await expect(readChartArchive(good.subarray(0, good.length - 30))).rejects.toThrow(/corrupt chart archive/);
    await expect(readChartArchive(Buffer.from('<html>not a chart</html>'))).rejects.toThrow(/corrupt chart archive/);
    await expect(readChartArchive(Buffer.alloc(0))).rejects.toThrow(ChartError);
    await expect(readChartArchive(await tgz([{ name: 'demo/values.yaml', data: 'a: 1\n' }]))).rejects.toThrow(/no Chart.yaml in the archive's top directory \(demo\)/);
    await expect(readChartArchive(good, { maxBytes: 100 })).rejects.toThrow(/larger than 100 bytes/);
  });
});

describe('the OCI chart helm push would make', () => {
  it('writes helm\'s manifest: no mediaType, config + layers sorted by digest, helm annotations; tag with _ for +', async () => {
    const archive = await tgz([{ name: 'demo/Chart.yaml', data: FULL_CHART_YAML, mtime: new Date('2021-01-02T03:04:05Z') }]);
    const chart = await readChartArchive(archive);
    const prov = Buffer.from('-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n...\n');
    const oci = buildHelmOciChart(chart, prov);
    const doc = JSON.parse(oci.manifest.toString('utf8')) as Record<string, any>;
    expect(Object.keys(doc)).toEqual(['schemaVersion', 'config', 'layers', 'annotations']);
    expect(doc.config).toEqual({ mediaType: 'application/vnd.cncf.helm.config.v1+json', digest: sha(oci.config.bytes), size: oci.config.bytes.length });
    expect(oci.config.bytes.toString('utf8')).toBe(goJson(chart.metadata));
    const layers = [
      { mediaType: 'application/vnd.cncf.helm.chart.content.v1.tar+gzip', digest: sha(archive), size: archive.length },
      { mediaType: 'application/vnd.cncf.helm.chart.provenance.v1.prov', digest: sha(prov), size: prov.length },
    ].sort((a, b) => (a.digest < b.digest ? -1 : 1));
    expect(doc.layers).toEqual(layers);
    expect(doc.annotations).toEqual({
      alpha: 'first',
      'org.opencontainers.image.authors': 'Jo (jo@example.com), Al',
      'org.opencontainers.image.created': '2021-01-02T03:04:05Z',
      'org.opencontainers.image.description': 'from annotations', // chart annotations may override this one
      'org.opencontainers.image.source': 'https://github.com/example/demo',
      'org.opencontainers.image.title': 'demo', // but not title or version
      'org.opencontainers.image.url': 'https://example.com/demo',
      'org.opencontainers.image.version': '1.2.3+build.1',
      zeta: 'last',
    });
    expect(Object.keys(doc.annotations)).toEqual(Object.keys(doc.annotations).sort());
    expect(oci.tag).toBe('1.2.3_build.1');
    expect(chartTag('1.0.0+a+b')).toBe('1.0.0_a_b');
    expect(oci.digest).toBe(sha(oci.manifest));
  });

  it('is deterministic: the same archive gives the same digest, no timestamp of its own', async () => {
    const archive = await tgz([{ name: 'demo/Chart.yaml', data: 'apiVersion: v2\nname: demo\nversion: 0.1.0\n' }]);
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(new Date('2020-01-01T00:00:00Z'));
      const a = buildHelmOciChart(await readChartArchive(archive));
      vi.setSystemTime(new Date('2030-06-06T06:06:06Z'));
      const b = buildHelmOciChart(await readChartArchive(Readable.from([archive])));
      expect(b.manifest.equals(a.manifest)).toBe(true);
      expect(b.digest).toBe(a.digest);
    } finally {
      vi.useRealTimers();
    }
  });

  it('leaves org.opencontainers.image.created out when Chart.yaml has no modification time', async () => {
    const archive = await tgz([{ name: 'demo/Chart.yaml', data: 'apiVersion: v2\nname: demo\nversion: 0.1.0\n', mtime: new Date(0) }]);
    const oci = buildHelmOciChart(await readChartArchive(archive));
    expect(JSON.parse(oci.manifest.toString('utf8')).annotations).toEqual({ 'org.opencontainers.image.title': 'demo', 'org.opencontainers.image.version': '0.1.0' });
  });
});

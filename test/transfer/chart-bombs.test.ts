// Hostile ChartMuseum archives (#14): a small gzip that inflates far beyond the chart limit, and tar
// headers that tar-stream would buffer whole. Both must fail the chart with a ChartError before the
// bytes pile up; ordinary archives (long names use PAX headers) still read.
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import tarStream from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { MAX_TAR_LONG_HEADER_BYTES, MAX_UNPACKED_CHART_BYTES, TarBounds, readChartArchive } from '../../src/transfer/chart-archive.js';
import { ChartError } from '../../src/transfer/chart-metadata.js';

const CHART_YAML = 'apiVersion: v2\nname: demo\nversion: 0.1.0\n';
const MiB = 1024 * 1024;

/** Tar bytes of some entries (with the two end-of-archive blocks unless `open`). */
async function tar(entries: { header: Partial<tarStream.Header> & { name: string }; data?: Buffer | string }[], open = false): Promise<Buffer> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c: unknown) => chunks.push(c as Buffer));
    pack.on('end', () => resolve());
    pack.on('error', reject);
  });
  for (const e of entries) pack.entry({ mtime: new Date('2023-03-04T05:06:07Z'), mode: 0o644, ...e.header }, e.data ?? '');
  pack.finalize();
  await done;
  const all = Buffer.concat(chunks);
  return open ? all.subarray(0, all.length - 1024) : all;
}

/** A ustar header block for a file of `size` bytes whose data follows (written by hand: tar-stream's pack wants the data). */
function fileHeader(name: string, size: number): Buffer {
  const block = Buffer.alloc(512);
  block.write(name, 0, 'utf8');
  block.write('0000644\0', 100);
  block.write('0000000\0', 108);
  block.write('0000000\0', 116);
  block.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
  block.write(`${Math.floor(Date.parse('2023-03-04T05:06:07Z') / 1000).toString(8).padStart(11, '0')}\0`, 136);
  block.write('0', 156);
  block.write('ustar\u000000', 257, 'binary');
  block.write('        ', 148);
  let sum = 0;
  for (const b of block) sum += b;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return block;
}

/**
 * A valid chart .tgz that inflates to `unpacked` bytes: Chart.yaml, then a file of zeros. Built from
 * concatenated gzip members (one per MiB of zeros, ~1 KiB each), so the archive stays small.
 */
async function gzipBomb(unpacked: number): Promise<Buffer> {
  const head = await tar([{ header: { name: 'demo/Chart.yaml' }, data: CHART_YAML }], true);
  const zeros = unpacked - head.length - 512 - 1024;
  const members = [gzipSync(Buffer.concat([head, fileHeader('demo/zeros', zeros)]))];
  const mib = gzipSync(Buffer.alloc(MiB));
  let left = zeros;
  for (; left >= MiB; left -= MiB) members.push(mib);
  // The rest of the zeros, their padding to a block, and the two end-of-archive blocks.
  members.push(gzipSync(Buffer.alloc(left + ((512 - (left % 512)) % 512) + 1024)));
  return Buffer.concat(members);
}

describe('ChartMuseum archive bounds', () => {
  it('fails a small gzip that inflates past the unpacked limit (a gzip bomb)', async () => {
    const bomb = await gzipBomb(MAX_UNPACKED_CHART_BYTES + 4 * MiB);
    expect(bomb.length).toBeLessThan(2 * MiB); // far below the 64 MiB compressed limit
    const read = readChartArchive(bomb);
    await expect(read).rejects.toBeInstanceOf(ChartError);
    await expect(read).rejects.toThrow(/unpacks to more than 134217728 bytes/);
  });

  it('reads an archive that inflates to just under the limit it is given', async () => {
    const archive = await gzipBomb(4 * MiB);
    await expect(readChartArchive(archive, { maxUnpackedBytes: 4 * MiB })).resolves.toMatchObject({ metadata: { name: 'demo', version: '0.1.0' } });
    await expect(readChartArchive(archive, { maxUnpackedBytes: 4 * MiB - 1 })).rejects.toThrow(/unpacks to more than/);
  });

  it('fails a huge PAX header before tar-stream buffers it', async () => {
    const archive = gzipSync(
      await tar([
        { header: { name: 'demo/Chart.yaml' }, data: CHART_YAML },
        { header: { name: 'demo/values.yaml', pax: { comment: 'x'.repeat(2 * MiB) } }, data: 'a: 1\n' },
      ]),
    );
    const read = readChartArchive(archive);
    await expect(read).rejects.toBeInstanceOf(ChartError);
    await expect(read).rejects.toThrow(new RegExp(`PAX header of \\d+ bytes \\(more than ${MAX_TAR_LONG_HEADER_BYTES}\\)`));
  });

  it('still reads archives with ordinary PAX headers (long names), fed in odd pieces', async () => {
    const long = `demo/templates/${'deep/'.repeat(30)}configmap.yaml`;
    const archive = gzipSync(
      await tar([
        { header: { name: 'demo/Chart.yaml' }, data: CHART_YAML },
        { header: { name: long }, data: 'kind: ConfigMap\n'.repeat(100) },
        { header: { name: 'demo/dir/', type: 'directory' } },
        { header: { name: 'demo/requirements.yaml' }, data: 'dependencies:\n  - name: redis\n    repository: https://charts.example.com\n' },
      ]),
    );
    const pieces = Array.from({ length: Math.ceil(archive.length / 7) }, (_, i) => archive.subarray(i * 7, (i + 1) * 7));
    const chart = await readChartArchive(Readable.from(pieces));
    expect(chart.metadata).toMatchObject({ name: 'demo', dependencies: [{ name: 'redis', repository: 'https://charts.example.com' }] });
  });

  it('TarBounds follows the framing: a file whose data looks like a PAX header is data, not a header', async () => {
    // 4 KiB of data that happens to contain a block that would read as a huge PAX header.
    const fake = Buffer.alloc(4096);
    fileHeader('x', 10 * MiB).copy(fake, 512);
    fake[512 + 156] = 'x'.charCodeAt(0);
    const bytes = await tar([{ header: { name: 'demo/Chart.yaml' }, data: CHART_YAML }, { header: { name: 'demo/blob.bin' }, data: fake }]);
    const guard = new TarBounds(MiB);
    const out: Buffer[] = [];
    await new Promise<void>((resolve, reject) => {
      guard.on('data', (c: Buffer) => out.push(c));
      guard.on('end', resolve);
      guard.on('error', reject);
      for (let i = 0; i < bytes.length; i += 1000) guard.write(bytes.subarray(i, i + 1000));
      guard.end();
    });
    expect(Buffer.concat(out).equals(bytes)).toBe(true);
  });
});

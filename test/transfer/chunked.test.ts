// ChunkReader: exact-size pieces out of a stream of arbitrary chunks, as buffers (resumable chunks)
// or as streams (streamed chunks). The upload protocol itself is tested against a real registry in
// test/integration/resume.test.ts.
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ChunkReader } from '../../src/transfer/chunked.js';

async function* pieces(buf: Buffer, sizes: number[]): AsyncGenerator<Buffer> {
  let at = 0;
  for (let i = 0; at < buf.length; i++) {
    const n = sizes[i % sizes.length]!;
    yield buf.subarray(at, at + n);
    at += n;
  }
}

async function collect(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe('ChunkReader', () => {
  const data = randomBytes(100_000);

  it('cuts buffers of exact sizes across source chunk boundaries', async () => {
    const reader = new ChunkReader(pieces(data, [7000, 13, 0, 40_000, 1]));
    const got: Buffer[] = [];
    for (const n of [1, 32_767, 32_768, 20_000, 14_464]) got.push(await reader.read(n));
    expect(got.map((b) => b.length)).toEqual([1, 32_767, 32_768, 20_000, 14_464]);
    expect(Buffer.concat(got).equals(data)).toBe(true);
    expect(await reader.atEnd()).toBe(true);
  });

  it('streams exact sizes without reading ahead of the piece', async () => {
    const reader = new ChunkReader(pieces(data, [65_536]));
    const first = await collect(reader.stream(10_000));
    const second = await collect(reader.stream(80_000));
    expect(first.equals(data.subarray(0, 10_000))).toBe(true);
    expect(second.equals(data.subarray(10_000, 90_000))).toBe(true);
    expect(await reader.atEnd()).toBe(false);
    expect((await reader.read(10_000)).equals(data.subarray(90_000))).toBe(true);
    expect(await reader.atEnd()).toBe(true);
  });

  it('fails a piece the source cannot fill', async () => {
    const reader = new ChunkReader(pieces(data.subarray(0, 1000), [300]));
    await expect(reader.read(2000)).rejects.toThrow(/ended 1000 bytes before/);
    const again = new ChunkReader(pieces(data.subarray(0, 1000), [300]));
    await expect(collect(again.stream(1001))).rejects.toThrow(/ended 1 bytes before/);
  });

  it('passes the source error on', async () => {
    async function* broken(): AsyncGenerator<Buffer> {
      yield data.subarray(0, 10);
      throw new Error('connection reset');
    }
    await expect(new ChunkReader(broken()).read(100)).rejects.toThrow('connection reset');
  });
});

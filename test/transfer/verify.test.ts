import { createHash } from 'node:crypto';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { DigestMismatchError } from '../../src/registry/errors.js';
import { DigestVerifier } from '../../src/transfer/verify.js';

const data = Buffer.alloc(300_000, 3);
const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;

function chunks(buf: Buffer, size = 65536): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) parts.push(buf.subarray(i, i + size));
  return Readable.from(parts);
}

describe('DigestVerifier', () => {
  it('passes correct content through unchanged', async () => {
    const out: Buffer[] = [];
    await pipeline(chunks(data), new DigestVerifier(digest, data.length, 'test'), new Writable({ write(c, _e, cb) { out.push(c); cb(); } }));
    expect(Buffer.concat(out).equals(data)).toBe(true);
  });

  it('never releases the last bytes of wrong content', async () => {
    const bad = Buffer.from(data);
    bad[bad.length - 10] = bad[bad.length - 10]! ^ 0xff;
    let received = 0;
    const sink = new Writable({ write(c: Buffer, _e, cb) { received += c.length; cb(); } });
    await expect(pipeline(chunks(bad), new DigestVerifier(digest, data.length, 'test'), sink)).rejects.toBeInstanceOf(DigestMismatchError);
    expect(received).toBeLessThan(data.length);
  });

  it('rejects truncated and oversized content', async () => {
    await expect(pipeline(chunks(data.subarray(0, 1000)), new DigestVerifier(digest, data.length, 't'), new PassThrough().resume())).rejects.toThrow(/digest mismatch/);
    await expect(pipeline(chunks(Buffer.concat([data, Buffer.alloc(1)])), new DigestVerifier(digest, data.length, 't'), new PassThrough().resume())).rejects.toThrow(/more than/);
  });

  it('verifies a stream that starts at an offset, given the hash of the bytes before it', async () => {
    const offset = 100_000;
    const prefix = createHash('sha256').update(data.subarray(0, offset));
    const out: Buffer[] = [];
    const verifier = new DigestVerifier(digest, data.length, 'test', prefix.copy(), offset);
    await pipeline(chunks(data.subarray(offset)), verifier, new Writable({ write(c, _e, cb) { out.push(c); cb(); } }));
    expect(Buffer.concat(out).equals(data.subarray(offset))).toBe(true);
    expect(verifier.bytes).toBe(data.length);
    // The wrong prefix state (or a suffix from the wrong offset) cannot pass.
    await expect(
      pipeline(chunks(data.subarray(offset + 1)), new DigestVerifier(digest, data.length, 'test', prefix.copy(), offset), new PassThrough().resume()),
    ).rejects.toBeInstanceOf(DigestMismatchError);
  });
});

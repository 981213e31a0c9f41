// Digest verification on the fly. The verifier holds back the most recent chunk until the stream
// ends and the hash is known: on a mismatch it errors instead of releasing the last bytes, so the
// destination never receives a complete (committable) body with the wrong content.
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { DigestMismatchError } from '../registry/errors.js';

export class DigestVerifier extends Transform {
  private readonly hash: Hash;
  private held: Buffer | undefined;
  private seen = 0;

  /**
   * @param expected digest the bytes must hash to (sha256 or sha512)
   * @param size expected byte count (-1 when unknown)
   * @param where label for the error message (registry/repository)
   * @param hash a hash that already holds the first `offset` bytes of the blob: for resumed uploads,
   *        whose stream starts at `offset` (chunked.ts rebuilds such a state from the source)
   * @param offset bytes of the blob already in `hash`
   */
  constructor(
    readonly expected: string,
    private readonly size: number,
    private readonly where: string,
    hash?: Hash,
    offset = 0,
  ) {
    super();
    this.hash = hash ?? createHash(hashAlgorithm(expected));
    this.seen = offset;
  }

  /** Bytes of the blob hashed so far (including a resumed prefix). */
  get bytes(): number {
    return this.seen;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk);
    this.seen += chunk.length;
    if (this.size >= 0 && this.seen > this.size) {
      done(new DigestMismatchError(this.expected, `more than ${this.size} bytes`, this.where));
      return;
    }
    const previous = this.held;
    this.held = chunk;
    done(null, previous);
  }

  override _flush(done: TransformCallback): void {
    const actual = `${this.expected.split(':')[0]}:${this.hash.digest('hex')}`;
    if (actual !== this.expected || (this.size >= 0 && this.seen !== this.size)) {
      done(new DigestMismatchError(this.expected, this.seen !== this.size && this.size >= 0 ? `${actual} (${this.seen} of ${this.size} bytes)` : actual, this.where));
      return;
    }
    done(null, this.held);
  }
}

/** Node's name of the hash a digest uses (sha256 unless it says sha512). */
export function hashAlgorithm(digest: string): 'sha256' | 'sha512' {
  return digest.startsWith('sha512:') ? 'sha512' : 'sha256';
}

// Copy by chunk (`transfer.chunkSize` > 0): each blob goes up as PATCH requests of at most chunkSize
// bytes with Content-Range, always to the latest Location, then a PUT ?digest= commits it.
//
// Two modes, by blob size:
//  - below `transfer.resumeThreshold`: each chunk is streamed straight from the verified source
//    stream into its PATCH (nothing is buffered). A failure starts the blob over.
//  - at or above it ("resumable"): each chunk is first read from the source into one buffer (paced by
//    the bandwidth cap), hashed, then PATCHed; after every 202 the session URL and the confirmed
//    offset are checkpointed in the state database. Why buffer: distribution (and so Harbor and TCR) cancels an upload
//    session as soon as a PATCH is cut mid-body (the stored size no longer matches the offset in the
//    session state), so a SIGKILL or a reset during a streamed PATCH would lose the whole session.
//    With buffered chunks a session is exposed only while one chunk is on the wire, and the last
//    chunk is hashed in memory and compared with the digest before it is sent at all.
// Resuming (a retry in this process, or a later run): ask the registry for the session's Range, take
// the hash state from memory when this process checkpointed it (hash.copy()), else rebuild it by
// re-reading the bytes before the offset from the source (Node cannot serialise a Hash), then read the
// rest with a Range request and go on. A session the registry no longer knows starts the blob over.
import { type Hash, createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { DigestMismatchError, RegistryError } from '../registry/errors.js';
import { cancelUpload, finishUpload, patchChunk, uploadStatus } from '../registry/upload.js';
import type { BlobJob, UploadStrategy, VerifiedBody } from './blob-copier.js';
import type { DestinationState } from '../state/types.js';
import { type TokenBucket, effectiveRate, takeAll } from './throttle.js';
import { hashAlgorithm } from './verify.js';

export interface ChunkedUploadOptions {
  /** transfer.chunkSize: the largest PATCH body. */
  chunkSize: number;
  /**
   * The default (transfer.chunkSize absent): only blobs of resumeThreshold and more are chunked, the
   * others go in one PUT; and a registry that refuses PATCH gets one PUT per blob for the rest of the
   * run (said once) instead of failing the blob.
   */
  onlyResumable?: boolean | undefined;
  /** transfer.resumeThreshold: blobs this large get checkpoints and mid-blob resume. */
  resumeThreshold: number;
  state: DestinationState;
  /** The process bandwidth bucket (the rule's comes with each job). */
  processBucket: TokenBucket;
  logger?: Logger | undefined;
  /**
   * Resumable chunks are cut to at most this many seconds of the bandwidth cap (shared by the
   * resumable uploads in flight), so that chunks leaving in bursts still average out to the cap over
   * a few seconds. Default 0.25.
   */
  paceSeconds?: number | undefined;
}

/** The registry does not take chunked uploads (or not chunks this large): a configuration problem, never retried. */
export class ChunkedUploadRefusedError extends RegistryError {
  override name = 'ChunkedUploadRefusedError';
  readonly retryable = false;
}

/** The upload session is gone or out of step (expired, purged, cancelled after a cut PATCH): start the blob over. */
export class UploadSessionLostError extends RegistryError {
  override name = 'UploadSessionLostError';
  readonly retryable = true;
}

/** The source sent fewer bytes than the blob's size. */
class SourceEndedError extends Error {
  override name = 'SourceEndedError';
  readonly retryable = true;
}

interface MemoryCheckpoint {
  location: URL;
  offset: number;
  /** Hash of exactly the first `offset` bytes. */
  hash: Hash;
}

interface ResumableState {
  location: URL;
  offset: number;
  hash: Hash;
  /** Bytes already in `hash` (0 or `offset`): below `offset`, the source is re-read to rebuild it. */
  hashed: number;
  minChunkLength?: number | undefined;
  /** A session this attempt opened (its first PATCH tells whether chunked uploads work at all). */
  fresh: boolean;
}

/** The chunk of resumable uploads when transfer.chunkSize is absent: one buffer of it per resumable upload in flight. */
export const DEFAULT_RESUMABLE_CHUNK = 16 * 1024 * 1024;

/** 64 MiB: the most a resumable chunk buffers unless transfer.chunkSize itself is larger. */
export const MAX_BUFFERED_CHUNK = 64 * 1024 * 1024;

/** Statuses that a first PATCH gets from a registry (or proxy) that does not do chunked uploads. */
const REFUSED = new Set([400, 404, 405, 411, 415, 416, 501]);
const SESSION_CODES = new Set(['BLOB_UPLOAD_UNKNOWN', 'BLOB_UPLOAD_INVALID']);

export class ChunkedUpload implements UploadStrategy {
  readonly ownsSession = true;
  private readonly sessions = new Map<string, MemoryCheckpoint>();
  private resumableInFlight = 0;
  /** Destinations that refused PATCH this run (onlyResumable): their blobs go in one PUT. */
  private readonly refused = new Set<string>();

  constructor(private readonly opts: ChunkedUploadOptions) {
    if (!(opts.chunkSize > 0)) throw new RangeError('ChunkedUpload needs transfer.chunkSize > 0');
  }

  isResumable(size: number): boolean {
    return size >= this.opts.resumeThreshold;
  }

  handles(job: BlobJob): boolean {
    if (this.refused.has(job.destinationKey)) return false;
    return !this.opts.onlyResumable || this.isResumable(job.descriptor.size);
  }

  fallBack(job: BlobJob, err: unknown): boolean {
    if (!this.opts.onlyResumable || !(err instanceof ChunkedUploadRefusedError)) return false;
    if (!this.refused.has(job.destinationKey)) {
      this.refused.add(job.destinationKey);
      this.opts.logger?.warn(
        { registry: job.destination.name, repository: job.destinationRepository, status: err.status, code: err.code },
        'the registry refuses chunked uploads (PATCH): its blobs go in one PUT for the rest of this run, without mid-blob resume',
      );
    }
    return true;
  }

  /**
   * The largest chunk a resumable upload holds in memory. A registry's OCI-Chunk-Min-Length may ask
   * for more (the header is the registry's to choose, up to the whole blob): such a blob is streamed
   * chunk by chunk instead, without a buffer and so without checkpoints.
   */
  get maxBufferedChunk(): number {
    return Math.max(this.opts.chunkSize, MAX_BUFFERED_CHUNK);
  }

  async upload(job: BlobJob, location: URL, open: (start: number) => Promise<VerifiedBody>, session: { minChunkLength?: number | undefined } = {}): Promise<void> {
    const tooLargeToBuffer = session.minChunkLength !== undefined && session.minChunkLength > this.maxBufferedChunk;
    if (tooLargeToBuffer && this.isResumable(job.descriptor.size)) {
      this.opts.logger?.warn(
        { registry: job.destination.name, repository: job.destinationRepository, digest: job.descriptor.digest, minChunkLength: session.minChunkLength, maxBufferedChunk: this.maxBufferedChunk },
        'the registry asks for chunks larger than Ferry buffers (OCI-Chunk-Min-Length): this blob is streamed without resume checkpoints',
      );
    }
    if (this.isResumable(job.descriptor.size) && !tooLargeToBuffer) {
      const hash = createHash(hashAlgorithm(job.descriptor.digest));
      await this.opts.state.checkpointUpload(job.destinationKey, job.destinationRepository, job.descriptor.digest, location.href, 0);
      await this.resumable(job, { location, offset: 0, hash, hashed: 0, minChunkLength: session.minChunkLength, fresh: true });
      return;
    }
    await this.streaming(job, location, open, session.minChunkLength);
  }

  async hasCheckpoint(job: BlobJob): Promise<boolean> {
    if (this.opts.onlyResumable && !this.isResumable(job.descriptor.size)) return false;
    return this.sessions.has(sessionKey(job)) || (await this.opts.state.upload(job.destinationKey, job.destinationRepository, job.descriptor.digest)) !== undefined;
  }

  /**
   * Finishes an upload checkpointed by this process or an earlier one. Returns false when there is no
   * checkpoint or the registry no longer has the session (the caller then starts the blob over).
   */
  async resume(job: BlobJob): Promise<boolean> {
    const key = sessionKey(job);
    const { digest, size } = job.descriptor;
    const memory = this.sessions.get(key);
    const journaled = await this.opts.state.upload(job.destinationKey, job.destinationRepository, digest);
    const location = memory?.location ?? (journaled ? new URL(journaled.location) : undefined);
    if (!location) return false;
    const status = await uploadStatus(job.destination, job.destinationRepository, location);
    if (!status || status.offset > size) {
      this.opts.logger?.info({ digest, repository: job.destinationRepository }, 'upload session expired or unknown at the destination: starting the blob over');
      await this.forget(job);
      if (status) await cancelUpload(job.destination, job.destinationRepository, status.location);
      return false;
    }
    const inMemory = memory !== undefined && memory.offset === status.offset;
    const hash = inMemory ? memory.hash.copy() : createHash(hashAlgorithm(digest));
    this.opts.logger?.info(
      { digest, repository: job.destinationRepository, offset: status.offset, size, rereadBytes: inMemory ? 0 : status.offset },
      inMemory ? 'resuming blob upload' : 'resuming blob upload: re-reading the bytes before the offset from the source to rebuild the digest state',
    );
    await this.resumable(job, { location: status.location, offset: status.offset, hash, hashed: inMemory ? status.offset : 0, fresh: false });
    return true;
  }

  private async forget(job: BlobJob): Promise<void> {
    this.sessions.delete(sessionKey(job));
    await this.opts.state.clearUpload(job.destinationKey, job.destinationRepository, job.descriptor.digest);
  }

  /** Chunks streamed from the verified body; no buffering, no checkpoints. */
  private async streaming(job: BlobJob, start: URL, open: (start: number) => Promise<VerifiedBody>, minChunkLength: number | undefined): Promise<void> {
    const { digest, size } = job.descriptor;
    const repo = job.destinationRepository;
    const body = await open(0);
    const reader = new ChunkReader(body.stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>);
    let location = start;
    let offset = 0;
    try {
      while (offset < size) {
        const len = this.chunkLength(job, offset, minChunkLength, false);
        const part = reader.stream(len);
        const res = await this.patch(job, location, part, offset, len, offset === 0, job.signal).catch((err: unknown) => {
          part.destroy();
          throw err;
        });
        location = res.location;
        offset += len;
      }
      // The verifier releases the last bytes only once the digest matched; this also surfaces a
      // source that has more bytes than the manifest says.
      await body.done;
      await finishUpload(job.destination, repo, location, digest);
    } catch (err) {
      body.stream.destroy(err as Error);
      // Report the source/verification failure in preference to the request error it caused.
      const sourceError = await body.done.then(
        () => undefined,
        (e: unknown) => e,
      );
      await cancelUpload(job.destination, repo, location);
      throw sourceError instanceof DigestMismatchError ? sourceError : err;
    } finally {
      void reader.close();
    }
  }

  /** Buffered chunks with a checkpoint after each: see the file header. */
  private async resumable(job: BlobJob, state: ResumableState): Promise<void> {
    const { digest, size } = job.descriptor;
    const repo = job.destinationRepository;
    const algorithm = hashAlgorithm(digest);
    const where = `${job.source.name}/${job.sourceRepository}`;
    const hash = state.hash;
    let location = state.location;
    let offset = state.offset;
    let first = state.fresh;
    const reader = new ChunkReader(readSource(job, [job.ruleBucket, this.opts.processBucket], offset, hash, state.hashed, job.signal));
    this.resumableInFlight++;
    try {
      const verify = async (): Promise<void> => {
        // Pull to the end first: a resumed prefix is hashed as the source is read.
        if (!(await reader.atEnd())) throw new DigestMismatchError(digest, `more than ${size} bytes`, where);
        const actual = `${algorithm}:${hash.copy().digest('hex')}`;
        if (actual !== digest) throw new DigestMismatchError(digest, actual, where);
      };
      if (offset >= size) await verify();
      while (offset < size) {
        const len = this.chunkLength(job, offset, state.minChunkLength, true);
        const chunk = await reader.read(len);
        hash.update(chunk);
        // The last chunk leaves only once the whole blob hashed to its digest.
        if (offset + len === size) await verify();
        // The chunk on the wire may finish after a graceful-stop abort (only the per-blob deadline
        // cuts it): a PATCH cut mid-body would cost the whole session.
        const res = await this.patch(job, location, chunk, offset, len, first, job.deadline);
        first = false;
        job.stats.addBytes(len, digest);
        location = res.location;
        offset += len;
        this.sessions.set(sessionKey(job), { location, offset, hash: hash.copy() });
        await this.opts.state.checkpointUpload(job.destinationKey, repo, digest, location.href, offset);
        job.signal?.throwIfAborted();
      }
      await finishUpload(job.destination, repo, location, digest);
      this.sessions.delete(sessionKey(job));
    } catch (err) {
      if (!keepsSession(err)) {
        await this.forget(job).catch(() => undefined); // the copy's own error is the one to report
        if (!(err instanceof UploadSessionLostError)) await cancelUpload(job.destination, repo, location);
      }
      throw err;
    } finally {
      this.resumableInFlight--;
      void reader.close();
    }
  }

  private chunkLength(job: BlobJob, offset: number, minChunkLength: number | undefined, paced: boolean): number {
    let len = this.opts.chunkSize;
    if (paced) {
      const rate = effectiveRate([job.ruleBucket, this.opts.processBucket]);
      if (rate > 0) {
        const share = (rate * (this.opts.paceSeconds ?? 0.25)) / Math.max(1, this.resumableInFlight);
        len = Math.min(len, Math.max(64 * 1024, Math.floor(share)));
      }
    }
    // OCI-Chunk-Min-Length binds every chunk but the last.
    if (minChunkLength) len = Math.max(len, minChunkLength);
    return Math.min(len, job.descriptor.size - offset);
  }

  /** One PATCH, with the registry's refusals turned into errors that say what to do. */
  private async patch(
    job: BlobJob,
    location: URL,
    body: Readable | Buffer,
    start: number,
    length: number,
    first: boolean,
    signal: AbortSignal | undefined,
  ): Promise<{ location: URL; offset: number }> {
    const dst = job.destination;
    const repo = job.destinationRepository;
    let res: { location: URL; offset: number };
    try {
      res = await patchChunk(dst, repo, location, body, start, length, signal);
    } catch (err) {
      if (!(err instanceof RegistryError) || err.status === undefined || err.name === 'AuthError') throw err;
      const details = { registry: err.registry, repository: repo, status: err.status, code: err.code, detail: err.detail };
      if (SESSION_CODES.has(err.code ?? '') && (err.status === 404 || err.status === 400 || err.status === 416)) {
        throw new UploadSessionLostError(`upload session of ${job.descriptor.digest} lost at offset ${start}: starting the blob over`, details);
      }
      if (first && err.status === 413) {
        throw new ChunkedUploadRefusedError(
          `a chunk of ${length} bytes is too large for the registry or a proxy in front of it: lower transfer.chunkSize (or set it to 0 to upload each blob in one PUT)`,
          details,
        );
      }
      if (first && REFUSED.has(err.status)) {
        throw new ChunkedUploadRefusedError(`the registry refuses chunked uploads (PATCH): set transfer.chunkSize: 0 to upload each blob in one PUT`, details);
      }
      if (err.status === 416) throw new UploadSessionLostError(`upload session of ${job.descriptor.digest} out of step at offset ${start}: starting the blob over`, details);
      throw err;
    }
    // distribution answers "0-0" for one byte as for none (see rangeEnd): accept it for a 1-byte first chunk.
    if (res.offset !== start + length && !(start === 0 && length === 1 && res.offset === 0)) {
      throw new UploadSessionLostError(`the registry confirmed ${res.offset} bytes after chunk ${start}-${start + length - 1}: starting the blob over`, {
        registry: dst.name,
        repository: repo,
      });
    }
    return res;
  }
}

function sessionKey(job: BlobJob): string {
  return `${job.destinationKey}|${job.destinationRepository}|${job.descriptor.digest}`;
}

/** Whether a failed resumable upload keeps its session and checkpoint for the next attempt or run. */
function keepsSession(err: unknown): boolean {
  if (err instanceof DigestMismatchError || err instanceof ChunkedUploadRefusedError || err instanceof UploadSessionLostError) return false;
  return true;
}

/**
 * The blob's bytes from `offset`, throttled (every byte read crosses the line, so every byte pays the
 * cap). Bytes before `offset` that `hash` lacks (from `hashed` on) are read first, hashed and dropped:
 * with a Range request for just them when the source supports ranges, then a second Range request
 * from `offset`; a source that ignores Range sends everything from 0 in one answer, which is used as
 * it comes. Never yields past the blob's size; a source with more or fewer bytes is an error.
 */
export async function* readSource(
  job: BlobJob,
  buckets: (TokenBucket | undefined)[],
  offset: number,
  hash: Hash,
  hashed: number,
  signal: AbortSignal | undefined,
): AsyncGenerator<Buffer> {
  const { digest, size } = job.descriptor;
  const where = `${job.source.name}/${job.sourceRepository}`;
  let next = hashed < offset ? hashed : offset; // first byte still needed
  while (next < size) {
    const end = next < offset ? offset - 1 : undefined;
    const res = await job.source.getBlob(job.sourceRepository, digest, { start: next, ...(end !== undefined ? { end } : {}), signal });
    if (res.size >= 0 && size >= 0 && res.size !== size) {
      res.body.destroy();
      throw new DigestMismatchError(digest, `a blob of ${res.size} bytes (manifest says ${size})`, where);
    }
    let at = res.start; // blob position of the next byte of this answer
    const before = next;
    for await (const raw of res.body) {
      let chunk = raw as Buffer;
      if (chunk.length === 0) continue;
      await takeAll(buckets, chunk.length, signal);
      const chunkStart = at;
      at += chunk.length;
      if (at > size) throw new DigestMismatchError(digest, `more than ${size} bytes`, where);
      if (at <= next) continue; // bytes before what we need (a source that ignored Range)
      if (chunkStart < next) chunk = chunk.subarray(next - chunkStart);
      const pos = at - chunk.length;
      if (pos < offset) {
        // Part of the prefix the hash lacks.
        const inPrefix = Math.min(chunk.length, offset - pos);
        hash.update(chunk.subarray(0, inPrefix));
        chunk = chunk.subarray(inPrefix);
      }
      next = at;
      if (chunk.length) yield chunk;
    }
    if (next === before) throw new SourceEndedError(`${where}: the source sent no bytes from offset ${before} of ${digest} (${size} bytes)`);
  }
}

/**
 * Reads an async iterator of Buffers in pieces of exact sizes: as one Buffer (`read`) or as a stream
 * that never holds more than the source's own chunks (`stream`).
 */
export class ChunkReader {
  private leftover: Buffer | undefined;
  private ended = false;

  constructor(private readonly it: AsyncIterator<Buffer>) {}

  private async pull(): Promise<Buffer | undefined> {
    if (this.leftover) {
      const b = this.leftover;
      this.leftover = undefined;
      return b;
    }
    while (!this.ended) {
      const r = await this.it.next();
      if (r.done) {
        this.ended = true;
        return undefined;
      }
      const value = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as Uint8Array);
      if (value.length) return value;
    }
    return undefined;
  }

  private take(chunk: Buffer, wanted: number): Buffer {
    if (chunk.length <= wanted) return chunk;
    this.leftover = chunk.subarray(wanted);
    return chunk.subarray(0, wanted);
  }

  /** Exactly `n` bytes in one Buffer. */
  async read(n: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let got = 0;
    while (got < n) {
      const c = await this.pull();
      if (!c) throw new SourceEndedError(`the source ended ${n - got} bytes before the end of a chunk`);
      const part = this.take(c, n - got);
      parts.push(part);
      got += part.length;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, n);
  }

  /** Exactly `n` bytes as a stream, passed through as they arrive. */
  stream(n: number): Readable {
    const self = this;
    return Readable.from(
      (async function* () {
        let left = n;
        while (left > 0) {
          const c = await self.pull();
          if (!c) throw new SourceEndedError(`the source ended ${left} bytes before the end of a chunk`);
          const part = self.take(c, left);
          left -= part.length;
          yield part;
        }
      })(),
      { objectMode: false },
    );
  }

  /** True when the source has no more bytes. */
  async atEnd(): Promise<boolean> {
    const c = await this.pull();
    if (!c) return true;
    this.leftover = c;
    return false;
  }

  async close(): Promise<void> {
    this.ended = true;
    await this.it.return?.().catch(() => undefined);
  }
}

// The blob queue: one bounded p-queue for the whole process, deduplicated by digest per destination
// registry. The first artifact that needs a blob copies it; every later one waits for that copy and
// then skips (same repository) or mounts (another repository), so a base layer shared by 500 images
// crosses the wire once.
import { PassThrough, type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import PQueue from 'p-queue';
import type { Logger } from 'pino';
import type { RegistryClient } from '../registry/client.js';
import { AuthError, DigestMismatchError, NotFoundError, RegistryError, UnreachableError } from '../registry/errors.js';
import { backoffMs, isNetworkError } from '../registry/http.js';
import type { Descriptor } from '../registry/media-types.js';
import { cancelUpload, putMonolithic, startUpload } from '../registry/upload.js';
import type { Journal } from './journal.js';
import type { RuleStats } from './stats.js';
import { type TokenBucket, throttled } from './throttle.js';
import { DigestVerifier } from './verify.js';

export interface BlobJob {
  source: RegistryClient;
  sourceRepository: string;
  destination: RegistryClient;
  /** Key of the destination registry in the journal (name@host). */
  destinationKey: string;
  destinationRepository: string;
  descriptor: Pick<Descriptor, 'digest' | 'size' | 'mediaType'>;
  stats: RuleStats;
  /** Rule bandwidth bucket (the process bucket is added by the copier). */
  ruleBucket?: TokenBucket | undefined;
  signal?: AbortSignal | undefined;
}

export type BlobOutcome = 'uploaded' | 'mounted' | 'skipped';

/** Uploads a verified body into an open session. The chunked / resumable strategy plugs in here. */
export interface UploadStrategy {
  upload(job: BlobJob, location: URL, open: (start: number) => Promise<VerifiedBody>): Promise<void>;
}

export interface VerifiedBody {
  /** Verified, throttled, counted bytes from `start`. Errors (DigestMismatchError) when content is wrong. */
  stream: Readable;
  start: number;
  /** Settles when the pipeline feeding `stream` ends; rejects with the source/verification error. */
  done: Promise<void>;
}

export interface BlobCopierOptions {
  concurrency: number;
  retries: number;
  journal: Journal;
  /** Journal entries older than this (ms) are confirmed with a HEAD. 0 = always trust. */
  journalMaxAgeMs: number;
  processBucket: TokenBucket;
  logger?: Logger | undefined;
  uploadStrategy?: UploadStrategy | undefined;
}

export class BlobCopier {
  readonly queue: PQueue;
  /** destKey|digest → first copy in this run */
  private readonly firstCopy = new Map<string, Promise<unknown>>();
  /** destKey|digest → repositories where this run saw or put the blob */
  private readonly landed = new Map<string, Set<string>>();

  constructor(private readonly opts: BlobCopierOptions) {
    this.queue = new PQueue({ concurrency: opts.concurrency });
  }

  /** Blobs being copied right now. */
  get active(): number {
    return this.queue.pending;
  }

  async copy(job: BlobJob): Promise<BlobOutcome> {
    const key = `${job.destinationKey}|${job.descriptor.digest}`;
    if (this.landed.get(key)?.has(job.destinationRepository)) {
      job.stats.addBlob('skipped', job.descriptor.size);
      return 'skipped';
    }
    const first = this.firstCopy.get(key);
    if (first) {
      // Wait outside the queue (holding no slot) for the first copy, then mount or skip.
      await first.catch(() => undefined);
      if (this.landed.get(key)?.has(job.destinationRepository)) {
        job.stats.addBlob('skipped', job.descriptor.size);
        return 'skipped';
      }
      return this.enqueue(job, key);
    }
    const run = this.enqueue(job, key);
    this.firstCopy.set(key, run);
    return run;
  }

  private async enqueue(job: BlobJob, key: string): Promise<BlobOutcome> {
    const outcome = (await this.queue.add(() => this.process(job, key), { signal: job.signal })) as BlobOutcome;
    let set = this.landed.get(key);
    if (!set) this.landed.set(key, (set = new Set()));
    set.add(job.destinationRepository);
    job.stats.addBlob(outcome, job.descriptor.size);
    return outcome;
  }

  private async process(job: BlobJob, key: string): Promise<BlobOutcome> {
    const { journal } = this.opts;
    const { digest } = job.descriptor;
    const journaled = journal.blob(job.destinationKey, job.destinationRepository, digest);
    if (journaled && (this.opts.journalMaxAgeMs === 0 || Date.now() - journaled.at < this.opts.journalMaxAgeMs)) {
      return 'skipped';
    }
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.attempt(job, key, journaled !== undefined);
      } catch (err) {
        if (!isRetryable(err) || attempt > this.opts.retries || job.signal?.aborted) throw err;
        const delay = backoffMs(attempt);
        this.opts.logger?.warn({ digest, repository: job.destinationRepository, attempt, err: (err as Error).message }, 'blob copy failed, retrying');
        await sleep(delay, undefined, { signal: job.signal });
      }
    }
  }

  private async attempt(job: BlobJob, key: string, wasJournaled: boolean): Promise<BlobOutcome> {
    const { journal } = this.opts;
    const { digest, size } = job.descriptor;
    const dst = job.destination;
    const repo = job.destinationRepository;
    if (await dst.headBlob(repo, digest)) {
      journal.recordBlob(job.destinationKey, repo, digest, size);
      return 'skipped';
    }
    if (wasJournaled) journal.forgetBlob(job.destinationKey, repo, digest);

    // Mount from a repository where this run or an earlier one put the blob.
    const candidates = [...(this.landed.get(key) ?? []), ...journal.blobLocations(job.destinationKey, digest)].filter((r) => r !== repo);
    let session = await startUpload(dst, repo, candidates[0] ? { digest, from: candidates[0] } : undefined);
    if (session.mounted) {
      journal.recordBlob(job.destinationKey, repo, digest, size);
      return 'mounted';
    }
    job.stats.blobStarted(digest, size);
    try {
      const open = (start: number) => this.openVerified(job, start);
      if (this.opts.uploadStrategy) {
        await this.opts.uploadStrategy.upload(job, session.location, open);
      } else {
        await this.uploadMonolithic(job, session.location, open);
      }
    } catch (err) {
      await cancelUpload(dst, repo, session.location);
      throw err;
    } finally {
      job.stats.blobEnded(digest);
    }
    journal.recordBlob(job.destinationKey, repo, digest, size);
    return 'uploaded';
  }

  private async uploadMonolithic(job: BlobJob, location: URL, open: (start: number) => Promise<VerifiedBody>): Promise<void> {
    const body = await open(0);
    const put = putMonolithic(job.destination, job.destinationRepository, location, body.stream, job.descriptor.size, job.descriptor.digest, job.signal).catch(
      (err: unknown) => {
        // The registry answered before reading the whole body: stop the source too.
        body.stream.destroy(err as Error);
        throw err;
      },
    );
    // Report the source/verification failure in preference to the request error it caused.
    const [pipe, req] = await Promise.allSettled([body.done, put]);
    if (pipe.status === 'rejected') throw pipe.reason;
    if (req.status === 'rejected') throw req.reason;
  }

  /**
   * Opens the source blob at `start` and returns a stream that is throttled, verified against the digest
   * (when reading from 0) and counted into the rule's bytes.
   */
  async openVerified(job: BlobJob, start: number): Promise<VerifiedBody> {
    const { digest, size } = job.descriptor;
    const src = await job.source.getBlob(job.sourceRepository, digest, { start, signal: job.signal });
    if (start === 0 && src.size >= 0 && size >= 0 && src.size !== size) {
      src.body.destroy();
      throw new DigestMismatchError(digest, `a blob of ${src.size} bytes (manifest says ${size})`, `${job.source.name}/${job.sourceRepository}`);
    }
    const out = new PassThrough({ highWaterMark: 1024 * 1024 });
    const stages: NodeJS.ReadWriteStream[] = [];
    if (start === 0) stages.push(new DigestVerifier(digest, size, `${job.source.name}/${job.sourceRepository}`));
    stages.push(throttled([this.opts.processBucket, ...(job.ruleBucket ? [job.ruleBucket] : [])], job.signal));
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        job.stats.addBytes(chunk.length);
        done(null, chunk);
      },
    });
    const done = pipeline([src.body, ...stages, counter, out] as NodeJS.ReadWriteStream[]);
    done.catch(() => undefined);
    return { stream: out, start: src.start, done };
  }
}

/** Whole-blob retries: network trouble and server-side failures, not bad content or refused credentials. */
export function isRetryable(err: unknown): boolean {
  if (err instanceof DigestMismatchError || err instanceof AuthError || err instanceof NotFoundError) return false;
  if (err instanceof UnreachableError) return true;
  if (err instanceof RegistryError) return err.status === undefined || err.status >= 500 || err.status === 429 || err.status === 408 || err.code === 'BLOB_UPLOAD_UNKNOWN' || err.code === 'BLOB_UPLOAD_INVALID';
  if (isNetworkError(err)) return true;
  const e = err as { code?: string; name?: string; message?: string } | undefined;
  if (!e || e.name === 'AbortError') return false;
  return e.code === 'ERR_STREAM_PREMATURE_CLOSE' || /socket|reset|closed|terminated/i.test(String(e.message));
}

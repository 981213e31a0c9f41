// The blob queue: one bounded p-queue for the whole process, deduplicated by digest per destination
// registry. The first artifact that needs a blob copies it; every later one waits for that copy and
// then skips (same repository) or mounts (another repository), so a base layer shared by 500 images
// crosses the wire once.
import { PassThrough, type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import PQueue from 'p-queue';
import type { Logger } from 'pino';
import type { BlobStream, RegistryClient } from '../registry/client.js';
import { AuthError, DigestMismatchError, NotFoundError, RegistryError, UnreachableError } from '../registry/errors.js';
import { deadline } from '../http/deadline.js';
import { isNetworkError } from '../http/dispatch.js';
import { backoffMs } from '../http/retry.js';
import type { Descriptor } from '../registry/media-types.js';
import { cancelUpload, putMonolithic, startUpload } from '../registry/upload.js';
import type { DestinationState } from '../state/types.js';
import type { RuleStats } from './stats.js';
import { type TokenBucket, throttled } from './throttle.js';
import { DigestVerifier } from './verify.js';

/**
 * Where the queue reads a blob from: a source registry (RegistryClient), or content Ferry made itself
 * (a ChartMuseum chart converted to an OCI chart) served the same way.
 */
export interface BlobSource {
  readonly name: string;
  getBlob(repository: string, digest: string, opts?: { start?: number; end?: number; signal?: AbortSignal | undefined; size?: number | undefined }): Promise<BlobStream>;
}

export interface BlobJob {
  source: BlobSource;
  sourceRepository: string;
  destination: RegistryClient;
  /** Key of the destination registry in the state (name@host). */
  destinationKey: string;
  destinationRepository: string;
  descriptor: Pick<Descriptor, 'digest' | 'size' | 'mediaType'>;
  stats: RuleStats;
  /** Rule bandwidth bucket (the process bucket is added by the copier). */
  ruleBucket?: TokenBucket | undefined;
  /** Aborts the copy in flight (and, for a strategy, everything of this attempt). */
  signal?: AbortSignal | undefined;
  /** Graceful stop: once aborted, no new blob copy starts; copies in flight go on until `signal`. */
  stop?: AbortSignal | undefined;
  /** Set by the copier for each attempt: fires only when the per-blob deadline passes (not on stop/abort). */
  deadline?: AbortSignal | undefined;
  /**
   * The destination repository had no tag when this run reached it: no HEAD before the upload (the
   * journal and this run's own record still skip what is there).
   */
  destinationEmpty?: boolean | undefined;
}

export type BlobOutcome = 'uploaded' | 'mounted' | 'skipped';

/**
 * The first copy of a blob across processes (cooperating workers on one PostgreSQL state): one worker
 * claims it and uploads; the others wait until it is recorded somewhere and mount it from there.
 */
export interface BlobClaims {
  /** True: this process uploads the blob. False: a live worker is uploading it now. */
  claimBlob(registry: string, digest: string): Promise<boolean>;
  releaseBlob(registry: string, digest: string): Promise<void>;
}

/** How often a worker waiting for another's upload looks for where it landed (ms). */
const CLAIM_POLL_MS = 250;

/** Uploads a verified body into an open session. The chunked / resumable strategy plugs in here. */
export interface UploadStrategy {
  upload(job: BlobJob, location: URL, open: (start: number) => Promise<VerifiedBody>, session?: { minChunkLength?: number | undefined }): Promise<void>;
  /**
   * Finishes an upload checkpointed earlier (this process or a previous run), before a new session is
   * opened. Resolves true when the blob is now complete, false when there is nothing to resume.
   */
  resume?(job: BlobJob): Promise<boolean>;
  /** Whether `resume` has a checkpoint to work on for this blob (no request made). */
  hasCheckpoint?(job: BlobJob): Promise<boolean>;
  /** True when the strategy cancels (or keeps, to resume) its sessions itself on failure. */
  readonly ownsSession?: boolean;
  /** Whether this blob goes through the strategy (default: every blob); else one monolithic PUT. */
  handles?(job: BlobJob): boolean;
  /** After `upload` failed with `err`: true to upload the blob again in one PUT (a registry refusing PATCH). */
  fallBack?(job: BlobJob, err: unknown): boolean;
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
  /** What the destinations hold, across runs (the state database). */
  state: DestinationState;
  /** State entries older than this (ms) are confirmed with a HEAD. 0 = always trust. */
  journalMaxAgeMs: number;
  processBucket: TokenBucket;
  logger?: Logger | undefined;
  uploadStrategy?: UploadStrategy | undefined;
  /**
   * Per-blob deadline: an attempt is abandoned after `requestTimeoutMs + size / rate`, where rate is
   * `minBlobRate` (bytes/s), lowered under a bandwidth cap to a quarter of each slot's fair share.
   * 0 or absent = no per-blob deadline (the per-request idle timeout still applies).
   */
  minBlobRate?: number | undefined;
  requestTimeoutMs?: number | undefined;
}

/** Not copied because a graceful stop began before the copy started; never retried. */
export class StoppedError extends Error {
  override name = 'StoppedError';
  readonly retryable = false;
  constructor(reason?: unknown) {
    super(`not started: stopping${reason instanceof Error ? ` (${reason.message})` : ''}; the next run copies it`);
  }
}

/** An attempt that outlived its per-blob deadline (a trickling connection); retried like a network error. */
export class BlobTimeoutError extends Error {
  override name = 'BlobTimeoutError';
  readonly retryable = true;
}

/** Blobs below this size are bound by requests (round trips), not bytes: they get their own, wider lane. */
export const SMALL_BLOB_BYTES = 256 * 1024;
/** Small blobs in flight per `concurrency` slot (8 x 8 = 64 at the default). */
export const SMALL_BLOBS_PER_SLOT = 8;
/** Blobs whose destination repositories this run remembers (beyond: the journal answers). */
export const LANDED_REMEMBERED = 10_000;
/** Repositories remembered per blob (enough to mount from; the journal knows the rest). */
const LANDED_REPOS_PER_BLOB = 16;

/**
 * A Map that forgets its least recently used entries beyond `max`: this run's knowledge is a cache in
 * front of the journal, so a million-tag run holds a bounded window of it.
 */
class BoundedMap<K, V> {
  private readonly map = new Map<K, V>();
  constructor(private readonly max: number) {}
  get(key: K): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }
  set(key: K, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value as K);
  }
  clear(): void {
    this.map.clear();
  }
  get size(): number {
    return this.map.size;
  }
}

export class BlobCopier {
  /** `concurrency` blobs at once, any size (bodies of SMALL_BLOB_BYTES and more only here: the byte budget). */
  readonly queue: PQueue;
  /** Small blobs when the main lane is full: SMALL_BLOBS_PER_SLOT x `concurrency` more (latency-bound: the bound on requests). */
  readonly smallQueue: PQueue;
  /** destKey|digest → its copy in this run while it runs (later copies mount or skip after it). */
  private readonly firstCopy = new Map<string, Promise<unknown>>();
  /** destKey|digest → repositories where this run saw or put the blob (bounded, most recent). */
  private readonly landed = new BoundedMap<string, Set<string>>(LANDED_REMEMBERED);
  /** destKey|digest|repository → the copy into that repository now in progress */
  private readonly inflight = new Map<string, Promise<BlobOutcome>>();

  constructor(private readonly opts: BlobCopierOptions) {
    this.queue = new PQueue({ concurrency: opts.concurrency });
    this.smallQueue = new PQueue({ concurrency: opts.concurrency * SMALL_BLOBS_PER_SLOT });
  }

  /** Blobs being copied right now. */
  get active(): number {
    return this.queue.pending + this.smallQueue.pending;
  }

  private claims: BlobClaims | undefined;

  /** Cooperating workers' blob claims for the run that starts (undefined: this process alone). */
  setClaims(claims: BlobClaims | undefined): void {
    this.claims = claims;
  }

  /** Forgets this process's knowledge of destinations (the journal keeps what is durable). */
  resetCaches(): void {
    this.landed.clear();
  }

  async copy(job: BlobJob): Promise<BlobOutcome> {
    if (job.stop?.aborted) throw new StoppedError(job.stop.reason);
    const key = `${job.destinationKey}|${job.descriptor.digest}`;
    const repoKey = `${key}|${job.destinationRepository}`;
    // Another artifact is putting this blob into this very repository (two tags sharing a layer):
    // wait for it. Two concurrent links of one blob into one repository race in some registries
    // (distribution's filesystem driver can read a half-written link: DIGEST_INVALID on the manifest).
    const sameRepository = this.inflight.get(repoKey);
    if (sameRepository) await sameRepository.catch(() => undefined);
    if (this.landed.get(key)?.has(job.destinationRepository)) {
      job.stats.addBlob('skipped', job.descriptor.size);
      return 'skipped';
    }
    const first = this.firstCopy.get(key);
    const run = (async () => {
      // Wait outside the queue (holding no slot) for the first copy, then mount or skip.
      if (first) {
        await first.catch(() => undefined);
        if (this.landed.get(key)?.has(job.destinationRepository)) {
          job.stats.addBlob('skipped', job.descriptor.size);
          return 'skipped' as const;
        }
        if (job.stop?.aborted) throw new StoppedError(job.stop.reason);
      }
      return this.enqueue(job, key);
    })();
    this.inflight.set(repoKey, run);
    if (!first) this.firstCopy.set(key, run);
    try {
      return await run;
    } finally {
      if (this.inflight.get(repoKey) === run) this.inflight.delete(repoKey);
      if (this.firstCopy.get(key) === run) this.firstCopy.delete(key);
    }
  }

  /** Forgets that a blob is in a repository (the registry said otherwise), so the next copy really copies it. */
  async forget(destinationKey: string, repository: string, digest: string): Promise<void> {
    this.landed.get(`${destinationKey}|${digest}`)?.delete(repository);
    await this.opts.state.forgetBlob(destinationKey, repository, digest);
  }

  private async enqueue(job: BlobJob, key: string): Promise<BlobOutcome> {
    // No `signal` option: p-queue would reject at once while the copy runs on. A queued copy checks
    // for stop/abort when its turn comes; a running one sees `signal` itself.
    // A small blob takes a free slot of the main lane like any other; only when that lane is full
    // does it go to the small lane instead of waiting behind big bodies.
    const small = job.descriptor.size >= 0 && job.descriptor.size < SMALL_BLOB_BYTES;
    const mainFull = this.queue.pending >= this.queue.concurrency || this.queue.size > 0;
    const lane = small && mainFull ? this.smallQueue : this.queue;
    const outcome = (await lane.add(() => {
      if (job.signal?.aborted) throw job.signal.reason;
      if (job.stop?.aborted) throw new StoppedError(job.stop.reason);
      return this.process(job, key);
    })) as BlobOutcome;
    let set = this.landed.get(key);
    if (!set) this.landed.set(key, (set = new Set()));
    if (set.size < LANDED_REPOS_PER_BLOB) set.add(job.destinationRepository);
    job.stats.addBlob(outcome, job.descriptor.size);
    return outcome;
  }

  private async process(job: BlobJob, key: string): Promise<BlobOutcome> {
    const { digest } = job.descriptor;
    const journaled = await this.opts.state.knownBlob(job.destinationKey, job.destinationRepository, digest);
    if (journaled && (this.opts.journalMaxAgeMs === 0 || Date.now() - journaled.at < this.opts.journalMaxAgeMs)) {
      return 'skipped';
    }
    const claimed = await this.firstCopyAcrossWorkers(job, key);
    try {
      return await this.attempts(job, key, journaled !== undefined);
    } finally {
      if (claimed) await claimed.releaseBlob(job.destinationKey, digest).catch(() => undefined);
    }
  }

  /**
   * With cooperating workers, a blob nobody has put at this destination yet is uploaded by one of
   * them: returns the claims when this process won the blob (it releases them after its attempts),
   * undefined once another worker's copy landed (the attempt then mounts it) or without cooperation.
   */
  private async firstCopyAcrossWorkers(job: BlobJob, key: string): Promise<BlobClaims | undefined> {
    const claims = this.claims;
    if (!claims || this.landed.get(key)?.size) return undefined;
    const { digest } = job.descriptor;
    for (let waited = false; ; waited = true) {
      if ((await this.opts.state.mountSources(job.destinationKey, digest, 1)).length) return undefined;
      if (await claims.claimBlob(job.destinationKey, digest)) {
        // Claimed after waiting: the other worker failed or died; if it did land meanwhile, mount it.
        if (waited && (await this.opts.state.mountSources(job.destinationKey, digest, 1)).length) {
          await claims.releaseBlob(job.destinationKey, digest);
          return undefined;
        }
        return claims;
      }
      if (job.stop?.aborted) throw new StoppedError(job.stop.reason);
      await sleep(CLAIM_POLL_MS, undefined, job.signal ? { signal: job.signal } : undefined);
    }
  }

  private async attempts(job: BlobJob, key: string, wasJournaled: boolean): Promise<BlobOutcome> {
    const { digest } = job.descriptor;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.attemptWithDeadline(job, key, wasJournaled);
      } catch (err) {
        if (job.signal?.aborted) throw err;
        if (!isRetryable(err) || attempt > this.opts.retries) throw err;
        const delay = backoffMs(attempt);
        this.opts.logger?.warn({ digest, repository: job.destinationRepository, attempt, err: (err as Error).message }, 'blob copy failed, retrying');
        await sleep(delay, undefined, { signal: job.signal });
      }
    }
  }

  /** The per-blob deadline of one attempt (ms), or undefined when there is none. */
  deadlineMs(job: BlobJob): number | undefined {
    const min = this.opts.minBlobRate ?? 0;
    if (!(min > 0)) return undefined;
    let rate = min;
    for (const b of [this.opts.processBucket, job.ruleBucket]) {
      if (b && b.bytesPerSecond > 0) rate = Math.min(rate, b.bytesPerSecond / this.opts.concurrency / 4);
    }
    return (this.opts.requestTimeoutMs ?? 120_000) + (Math.max(0, job.descriptor.size) / rate) * 1000;
  }

  private async attemptWithDeadline(job: BlobJob, key: string, wasJournaled: boolean): Promise<BlobOutcome> {
    const ms = this.deadlineMs(job);
    if (ms === undefined) return this.attempt(job, key, wasJournaled);
    const limit = deadline(Math.ceil(ms), job.signal);
    try {
      return await this.attempt({ ...job, signal: limit.signal, deadline: limit.expiry }, key, wasJournaled);
    } catch (err) {
      if (limit.expired && !job.signal?.aborted) {
        throw new BlobTimeoutError(
          `${job.descriptor.digest} (${job.descriptor.size} bytes) did not finish within ${Math.round(ms / 1000)} s (requestTimeout + size / minBlobRate): ${(err as Error).message}`,
          { cause: err },
        );
      }
      throw err;
    } finally {
      limit.clear();
    }
  }

  private async attempt(job: BlobJob, key: string, wasJournaled: boolean): Promise<BlobOutcome> {
    const { state } = this.opts;
    const { digest, size } = job.descriptor;
    const dst = job.destination;
    const repo = job.destinationRepository;
    if (!job.destinationEmpty && (await dst.headBlob(repo, digest))) {
      await state.recordBlob(job.destinationKey, repo, digest, size);
      return 'skipped';
    }
    if (wasJournaled) await state.forgetBlob(job.destinationKey, repo, digest);

    // An upload this process or an earlier run checkpointed half-way: finish it.
    const strategy = this.opts.uploadStrategy;
    if (strategy?.resume && ((await strategy.hasCheckpoint?.(job)) ?? true)) {
      job.stats.blobStarted(digest, size);
      try {
        if (await strategy.resume(job)) {
          await state.recordBlob(job.destinationKey, repo, digest, size);
          return 'uploaded';
        }
      } finally {
        job.stats.blobEnded(digest);
      }
    }

    // Mount from a repository where this run or an earlier one put the blob.
    const candidates = [...(this.landed.get(key) ?? []), ...(await state.mountSources(job.destinationKey, digest))].filter((r) => r !== repo);
    const session = await startUpload(dst, repo, candidates[0] ? { digest, from: candidates[0] } : undefined);
    if (session.mounted) {
      await state.recordBlob(job.destinationKey, repo, digest, size);
      return 'mounted';
    }
    job.stats.blobStarted(digest, size);
    try {
      const open = (start: number) => this.openVerified(job, start);
      const chunked = strategy !== undefined && (strategy.handles?.(job) ?? true);
      try {
        if (chunked) await strategy.upload(job, session.location, open, { minChunkLength: session.minChunkLength });
        else await this.uploadMonolithic(job, session.location, open);
      } catch (err) {
        if (!chunked || !strategy.ownsSession) await cancelUpload(dst, repo, session.location);
        if (!chunked || !strategy.fallBack?.(job, err)) throw err;
        // The registry refused PATCH: the same blob in one PUT, in a session of its own.
        const again = await startUpload(dst, repo);
        if (!again.mounted) {
          await this.uploadMonolithic(job, again.location, open).catch(async (e: unknown) => {
            await cancelUpload(dst, repo, again.location);
            throw e;
          });
        }
      }
    } finally {
      job.stats.blobEnded(digest);
    }
    await state.recordBlob(job.destinationKey, repo, digest, size);
    return 'uploaded';
  }

  private async uploadMonolithic(job: BlobJob, location: URL, open: (start: number) => Promise<VerifiedBody>): Promise<void> {
    // A body factory: the request layer opens the verified source again when it must send the PUT
    // once more (a 401 answered by re-authenticating inside the client).
    let body: VerifiedBody | undefined;
    const factory = async () => {
      body?.stream.destroy();
      body = await open(0);
      return body.stream;
    };
    try {
      await putMonolithic(job.destination, job.destinationRepository, location, factory, job.descriptor.size, job.descriptor.digest, job.signal);
    } catch (err) {
      // The registry answered before reading the whole body: stop the source too, and report the
      // source/verification failure in preference to the request error it caused.
      const current = body as VerifiedBody | undefined;
      current?.stream.destroy(err as Error);
      const sourceError = await current?.done.then(
        () => undefined,
        (e: unknown) => e,
      );
      throw sourceError && sourceError !== err && !isPrematureClose(sourceError) ? sourceError : err;
    }
    await (body as VerifiedBody | undefined)?.done;
  }

  /**
   * Opens the source blob at `start` and returns a stream that is throttled, verified against the digest
   * (when reading from 0) and counted into the rule's bytes.
   */
  async openVerified(job: BlobJob, start: number): Promise<VerifiedBody> {
    const { digest, size } = job.descriptor;
    const src = await job.source.getBlob(job.sourceRepository, digest, { start, signal: job.signal, size });
    if (start === 0 && src.size >= 0 && size >= 0 && src.size !== size) {
      src.body.destroy();
      throw new DigestMismatchError(digest, `a blob of ${src.size} bytes (manifest says ${size})`, `${job.source.name}/${job.sourceRepository}`);
    }
    const out = new PassThrough({ highWaterMark: 1024 * 1024 });
    const stages: NodeJS.ReadWriteStream[] = [];
    if (start === 0) stages.push(new DigestVerifier(digest, size, `${job.source.name}/${job.sourceRepository}`));
    // The rule's bucket first: a stream its rule holds back must not sit on the shared process tokens.
    stages.push(throttled([job.ruleBucket, this.opts.processBucket], job.signal));
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        job.stats.addBytes(chunk.length, digest);
        done(null, chunk);
      },
    });
    const done = pipeline([src.body, ...stages, counter, out] as NodeJS.ReadWriteStream[]);
    done.catch(() => undefined);
    return { stream: out, start: src.start, done };
  }
}

function isPrematureClose(err: unknown): boolean {
  return (err as { code?: string }).code === 'ERR_STREAM_PREMATURE_CLOSE';
}

/** Whole-blob retries: network trouble and server-side failures, not bad content or refused credentials. */
export function isRetryable(err: unknown): boolean {
  // Errors that know (chunked uploads, stops, deadlines) say so themselves.
  const flag = (err as { retryable?: unknown } | undefined)?.retryable;
  if (typeof flag === 'boolean') return flag;
  if (err instanceof DigestMismatchError || err instanceof AuthError || err instanceof NotFoundError) return false;
  if (err instanceof UnreachableError) return true;
  if (err instanceof RegistryError) return err.status === undefined || err.status >= 500 || err.status === 429 || err.status === 408 || err.code === 'BLOB_UPLOAD_UNKNOWN' || err.code === 'BLOB_UPLOAD_INVALID';
  if (isNetworkError(err)) return true;
  const e = err as { code?: string; name?: string; message?: string } | undefined;
  if (!e || e.name === 'AbortError') return false;
  return e.code === 'ERR_STREAM_PREMATURE_CLOSE' || /socket|reset|closed|terminated/i.test(String(e.message));
}

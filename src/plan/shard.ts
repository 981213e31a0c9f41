// Sharding a sync across processes with no coordinator: shard i of n keeps the repositories whose
// stable hash falls in bucket i. The hash is of the *source* repository path only, so every tag of a
// repository lands in one shard (one process copies it and owns its tag updates), and the split is the
// same on every machine, every run and every Ferry version:
//
//   bucket(repository) = uint64_be(sha256(utf8(repository))[0..8]) mod n
//
// Indexes are 0-based (0..n-1) like Kubernetes' JOB_COMPLETION_INDEX. Blobs shared by repositories of
// different shards are deduplicated at the destination (HEAD before upload, cross-repository mount),
// not by coordination.
import { createHash } from 'node:crypto';

export interface Shard {
  /** 0-based: 0..count-1 */
  index: number;
  count: number;
}

export class ShardError extends Error {
  override name = 'ShardError';
}

/** The bucket (0..count-1) a source repository falls in. */
export function shardOf(repository: string, count: number): number {
  if (!Number.isSafeInteger(count) || count < 1) throw new ShardError(`shard count must be a positive integer, got ${count}`);
  if (count === 1) return 0;
  const digest = createHash('sha256').update(repository, 'utf8').digest();
  return Number(digest.readBigUInt64BE(0) % BigInt(count));
}

/** A repositoryFilter for Engine.sync: keeps the repositories of this shard. */
export function shardFilter(shard: Shard): (sourceRepository: string) => boolean {
  return (repository) => shardOf(repository, shard.count) === shard.index;
}

const INTEGER = /^\d{1,9}$/;

function parseCount(value: string, what: string): number {
  const s = value.trim();
  if (!INTEGER.test(s) || Number(s) < 1) throw new ShardError(`${what}: expected a positive integer, got ${JSON.stringify(value)}`);
  return Number(s);
}

function parseIndex(value: string, count: number, what: string): number {
  const s = value.trim();
  if (!INTEGER.test(s)) throw new ShardError(`${what}: expected a shard index 0..${count - 1}, got ${JSON.stringify(value)}`);
  const index = Number(s);
  if (index >= count) {
    throw new ShardError(`${what}: shard index ${index} is out of range for ${count} shard(s): indexes are 0-based, 0..${count - 1}`);
  }
  return index;
}

/** Parses "i/n" (0-based i, 0 <= i < n). */
export function parseShard(value: string, what = '--shard'): Shard {
  const m = /^\s*([^/]*)\/([^/]*)\s*$/.exec(value);
  if (!m) throw new ShardError(`${what}: expected INDEX/COUNT with a 0-based index, e.g. 0/4 … 3/4, got ${JSON.stringify(value)}`);
  const count = parseCount(m[2]!, what);
  return { index: parseIndex(m[1]!, count, what), count };
}

export interface ShardSources {
  /** --shard i/n */
  shard?: string | undefined;
  /** --shards n: the index then comes from FERRY_SHARD or JOB_COMPLETION_INDEX */
  shards?: string | number | undefined;
  env?: NodeJS.ProcessEnv | undefined;
}

/**
 * Which shard this process runs, from (first match wins):
 *   1. `--shard i/n`
 *   2. `FERRY_SHARD=i/n` (with `--shards n`, n must agree)
 *   3. `--shards n` with `JOB_COMPLETION_INDEX=i` (Kubernetes Indexed Jobs)
 * Undefined when none is given: the process takes every repository.
 */
export function resolveShard(src: ShardSources): Shard | undefined {
  const env = src.env ?? process.env;
  const count = src.shards === undefined ? undefined : parseCount(String(src.shards), '--shards');
  if (src.shard !== undefined) {
    const shard = parseShard(src.shard, '--shard');
    if (count !== undefined && count !== shard.count) throw new ShardError(`--shard ${src.shard} and --shards ${count} disagree on the number of shards`);
    return shard;
  }
  const fromEnv = env.FERRY_SHARD?.trim();
  if (fromEnv) {
    const shard = parseShard(fromEnv, 'FERRY_SHARD');
    if (count !== undefined && count !== shard.count) throw new ShardError(`FERRY_SHARD=${fromEnv} and --shards ${count} disagree on the number of shards`);
    return shard;
  }
  if (count === undefined) return undefined;
  const index = env.JOB_COMPLETION_INDEX?.trim();
  if (!index) {
    throw new ShardError(
      `--shards ${count} needs the shard index from JOB_COMPLETION_INDEX (set by Kubernetes Indexed Jobs) or FERRY_SHARD=i/${count}; or give --shard i/${count}`,
    );
  }
  return { index: parseIndex(index, count, 'JOB_COMPLETION_INDEX'), count };
}

export function formatShard(shard: Shard): string {
  return `${shard.index}/${shard.count}`;
}

// Shard selection (src/plan/shard.ts): the "i/n" syntax, where the index comes from, and that the
// split is stable, complete and disjoint. The multi-process test against real registries is
// test/integration/shard.test.ts.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ShardError, parseShard, resolveShard, shardFilter, shardOf } from '../../src/plan/shard.js';

describe('parseShard', () => {
  it('reads 0-based INDEX/COUNT', () => {
    expect(parseShard('0/4')).toEqual({ index: 0, count: 4 });
    expect(parseShard(' 3/4 ')).toEqual({ index: 3, count: 4 });
    expect(parseShard('0/1')).toEqual({ index: 0, count: 1 });
  });

  it.each([
    ['4/4', /out of range for 4 shard\(s\): indexes are 0-based, 0\.\.3/],
    ['1/0', /positive integer/],
    ['-1/4', /shard index/],
    ['a/4', /shard index/],
    ['1.5/4', /shard index/],
    ['2', /INDEX\/COUNT/],
    ['1/2/3', /INDEX\/COUNT/],
    ['', /INDEX\/COUNT/],
  ])('refuses %j', (value, message) => {
    expect(() => parseShard(value)).toThrow(ShardError);
    expect(() => parseShard(value)).toThrow(message);
  });
});

describe('resolveShard', () => {
  it('is undefined when nothing asks for sharding', () => {
    expect(resolveShard({ env: {} })).toBeUndefined();
    // JOB_COMPLETION_INDEX alone (any Indexed Job) does not shard without --shards.
    expect(resolveShard({ env: { JOB_COMPLETION_INDEX: '2' } })).toBeUndefined();
  });

  it('takes --shard first, then FERRY_SHARD, then --shards with JOB_COMPLETION_INDEX', () => {
    const env = { FERRY_SHARD: '1/3', JOB_COMPLETION_INDEX: '2' };
    expect(resolveShard({ shard: '0/3', env })).toEqual({ index: 0, count: 3 });
    expect(resolveShard({ env })).toEqual({ index: 1, count: 3 });
    expect(resolveShard({ shards: '3', env })).toEqual({ index: 1, count: 3 });
    expect(resolveShard({ shards: '3', env: { JOB_COMPLETION_INDEX: '2' } })).toEqual({ index: 2, count: 3 });
    expect(resolveShard({ shards: 5, env: { JOB_COMPLETION_INDEX: '0' } })).toEqual({ index: 0, count: 5 });
  });

  it('refuses disagreements and missing or out-of-range indexes', () => {
    expect(() => resolveShard({ shard: '0/3', shards: '4', env: {} })).toThrow(/disagree/);
    expect(() => resolveShard({ shards: '4', env: { FERRY_SHARD: '0/3' } })).toThrow(/FERRY_SHARD=0\/3 and --shards 4 disagree/);
    expect(() => resolveShard({ shards: '4', env: {} })).toThrow(/JOB_COMPLETION_INDEX/);
    expect(() => resolveShard({ shards: '4', env: { JOB_COMPLETION_INDEX: '4' } })).toThrow(/JOB_COMPLETION_INDEX: shard index 4 is out of range/);
    expect(() => resolveShard({ shards: 'x', env: { JOB_COMPLETION_INDEX: '0' } })).toThrow(/--shards: expected a positive integer/);
    expect(() => resolveShard({ env: { FERRY_SHARD: '3' } })).toThrow(/FERRY_SHARD: expected INDEX\/COUNT/);
  });
});

describe('shardOf', () => {
  const repos = Array.from({ length: 2000 }, (_, i) => `team-${i % 37}/service-${i}`);

  it('is the documented formula: first 8 bytes of sha256(path), big-endian, mod n', () => {
    for (const repo of repos.slice(0, 50)) {
      const n = BigInt(`0x${createHash('sha256').update(repo).digest('hex').slice(0, 16)}`);
      for (const count of [1, 2, 3, 7, 64]) expect(shardOf(repo, count)).toBe(Number(n % BigInt(count)));
    }
    // Pinned values: a change here re-deals every running migration's repositories.
    expect([shardOf('library/nginx', 4), shardOf('library/redis', 4), shardOf('a/b/c/img', 10)]).toEqual([0, 3, 8]);
  });

  it('puts each repository in exactly one shard, and spreads them evenly', () => {
    for (const count of [1, 3, 8]) {
      const filters = Array.from({ length: count }, (_, index) => shardFilter({ index, count }));
      const sizes = filters.map(() => 0);
      for (const repo of repos) {
        const owners = filters.flatMap((keep, i) => (keep(repo) ? [i] : []));
        expect(owners).toHaveLength(1);
        sizes[owners[0]!]!++;
      }
      const expected = repos.length / count;
      for (const size of sizes) expect(Math.abs(size - expected)).toBeLessThan(expected * 0.15);
    }
  });

  it('refuses a non-positive count', () => {
    expect(() => shardOf('x', 0)).toThrow(ShardError);
  });
});

// Sharding across processes with no coordinator: three `ferry sync` processes, each told its shard a
// different way (--shards 3 + JOB_COMPLETION_INDEX as in a Kubernetes Indexed Job, FERRY_SHARD=i/n,
// --shard i/n), run at the same time against the same real registries. Together they must copy every
// repository exactly once (each repository in exactly one shard's report, as shardOf() predicts) and
// leave a complete destination; base layers shared across shards are deduplicated at the destination.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { SyncReport } from '../../src/engine/report.js';
import { shardOf } from '../../src/plan/shard.js';
import { type TestRegistry, buildImage, getManifest, headBlob, pushImage, randomBlob, sha256, startRegistry } from '../helpers/index.js';
import { runFerry } from '../cli/run.js';

const SHARDS = 3;
const REPOS = ['library/nginx', 'library/redis', 'library/postgres', 'team-a/api', 'team-a/web', 'team-a/worker', 'team-b/etl', 'team-b/ml/trainer', 'team-b/ml/serving', 'infra/proxy', 'infra/dns', 'tools/ci'];
const TAGS = ['1.0', '1.1'];

let source: TestRegistry;
let destination: TestRegistry;
const dir = mkdtempSync(join(tmpdir(), 'ferry-shard-'));
const base = randomBlob(64_000);
const digests = new Map<string, string>();

beforeAll(async () => {
  [source, destination] = await Promise.all([startRegistry({ auth: 'none' }), startRegistry({ auth: 'basic' })]);
  // Tag 1.0 of every repository shares `base` (across shards); 1.1 has layers of its own. (Two tags
  // of one repository sharing a blob first copied elsewhere hit a known blob-copier race, reported
  // separately; this test is about the split.)
  await Promise.all(
    REPOS.map(async (repo) => {
      for (const tag of TAGS) {
        const layers = tag === TAGS[0] ? [base, randomBlob(4_000)] : [randomBlob(6_000)];
        const { digest } = await pushImage(source, repo, tag, buildImage({ layers }));
        digests.set(`${repo}:${tag}`, digest);
      }
    }),
  );
}, 60_000);

afterAll(async () => {
  await Promise.all([source?.stop(), destination?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

it('n processes, one shard each, copy every repository exactly once and complete the destination', async () => {
  const config = join(dir, 'ferry.yaml');
  writeFileSync(
    config,
    stringify({
      registries: { src: { url: source.url }, dst: { url: destination.url, username: 'ferry', password: '${DST_PASSWORD}' } },
      transfer: { concurrency: 4, retries: 1 },
      rules: [{ name: 'migrate', source: 'src', destination: 'dst', destinationNamespace: 'mirror' }],
    }),
  );
  const common = ['sync', '--config', config, '--output', 'json'];
  const env = { DST_PASSWORD: 's3cret', FERRY_SHARD: '', JOB_COMPLETION_INDEX: '' };
  const runs = await Promise.all([
    runFerry([...common, '--shards', String(SHARDS), '--state-dir', join(dir, 'state-0')], { env: { ...env, JOB_COMPLETION_INDEX: '0' } }),
    runFerry([...common, '--state-dir', join(dir, 'state-1')], { env: { ...env, FERRY_SHARD: `1/${SHARDS}` } }),
    runFerry([...common, '--shard', `2/${SHARDS}`, '--state-dir', join(dir, 'state-2')], { env }),
  ]);

  const reportedBy = new Map<string, number[]>();
  const copied = new Map<string, number>();
  runs.forEach((run, shard) => {
    expect(run.code, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout) as SyncReport;
    expect(report.status).toBe('ok');
    const repos = new Set<string>();
    for (const item of report.rules[0]!.items) {
      expect(item.status).toBe('copied');
      const repo = item.source.replace(/^src\//, '').replace(/:[^:/]+$/, '');
      repos.add(repo);
      for (const tag of item.tags) copied.set(`${repo}:${tag}`, (copied.get(`${repo}:${tag}`) ?? 0) + 1);
    }
    for (const repo of repos) reportedBy.set(repo, [...(reportedBy.get(repo) ?? []), shard]);
    // Every shard got work (the repository names above spread over all three).
    expect(repos.size).toBeGreaterThan(0);
    // The log names the shard.
    expect(run.stderr).toContain(`"shard":"${shard}/${SHARDS}"`);
  });

  // Each repository in exactly one shard's report, the one its hash says.
  expect([...reportedBy.keys()].sort()).toEqual([...REPOS].sort());
  for (const [repo, shards] of reportedBy) expect(shards, repo).toEqual([shardOf(repo, SHARDS)]);
  // Each artifact copied exactly once across all shards.
  expect([...copied.keys()].sort()).toEqual([...digests.keys()].sort());
  for (const [ref, n] of copied) expect(n, ref).toBe(1);

  // The destination is complete and identical; the shared base layer is in every repository.
  const baseDigest = sha256(base);
  for (const [ref, digest] of digests) {
    const [repo, tag] = ref.split(':') as [string, string];
    expect((await getManifest(destination, `mirror/${repo}`, tag))?.digest, ref).toBe(digest);
  }
  for (const repo of REPOS) expect(await headBlob(destination, `mirror/${repo}`, baseDigest), repo).toBe(true);
});

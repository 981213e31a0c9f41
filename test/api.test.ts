// The programmatic API (src/index.ts, the package's entry point) against real registries: createFerry
// from an object or a YAML file, sync / plan / copy, typed events, the async iterator, bandwidth,
// sharding, errors, close(); and the examples under examples/ run as a user would run them.
import { readFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import {
  ConfigError,
  type Ferry,
  type FerryConfigInput,
  type FerryEvent,
  PreflightError,
  type ProgressSnapshot,
  ShardError,
  UnknownRuleError,
  createFerry,
  shardOf,
} from '../src/index.js';
import { type TestRegistry, buildImage, catalog, getManifest, listTags, pushImage, randomBlob, startRegistry } from './helpers/index.js';
import { REPO_ROOT } from './cli/run.js';

let source: TestRegistry;
let destination: TestRegistry;
const dir = mkdtempSync(join(tmpdir(), 'ferry-api-'));
const digests: Record<string, string> = {};
const REPOS = ['library/app', 'library/db', 'team/svc', 'team/tools/cli'];

function config(over: Partial<FerryConfigInput> = {}): FerryConfigInput {
  return {
    registries: {
      src: { url: source.url },
      dst: { url: destination.url, username: 'ferry', password: 's3cret' },
    },
    transfer: { concurrency: 4, retries: 1 },
    rules: [
      { name: 'library', source: 'src', destination: 'dst', destinationNamespace: 'lib', filters: { repositories: ['library/**'] } },
      { name: 'all', source: 'src', destination: 'dst', destinationNamespace: 'all' },
    ],
    ...over,
  };
}

const opened: Ferry[] = [];
function ferry(cfg: FerryConfigInput | string = config(), opts: Parameters<typeof createFerry>[1] = {}): Ferry {
  const f = createFerry(cfg, { stateDir: false, ...opts });
  opened.push(f);
  return f;
}

beforeAll(async () => {
  [source, destination] = await Promise.all([startRegistry({ auth: 'none' }), startRegistry({ auth: 'basic' })]);
  const base = randomBlob(30_000);
  for (const repo of REPOS) digests[repo] = (await pushImage(source, repo, '1.0', buildImage({ layers: [base, randomBlob(5_000)] }))).digest;
}, 60_000);

afterAll(async () => {
  await Promise.all(opened.map((f) => f.close()));
  await Promise.all([source?.stop(), destination?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

describe('createFerry', () => {
  it('plans without writing, then syncs a rule with typed events and progress', async () => {
    const f = ferry(config(), { progressIntervalMs: 0 });
    const plan = await f.plan('library');
    expect(plan).toMatchObject({ dryRun: true, status: 'planned', totals: { artifacts: { planned: 2 } } });
    expect(plan.rules[0]!.plan!.map((p) => p.destination).sort()).toEqual(['dst/lib/library/app:1.0', 'dst/lib/library/db:1.0']);
    expect(await catalog(destination)).toEqual([]);

    const seen: string[] = [];
    const progress: ProgressSnapshot[] = [];
    f.events.on('runStart', (run) => seen.push(`start ${run.kind}`));
    f.events.on('planned', (rule, n) => seen.push(`planned ${rule} ${n}`));
    f.events.on('artifact', (result, rule) => seen.push(`artifact ${rule} ${result.status} ${result.destination}:${result.tags.join(',')}`));
    f.events.on('progress', (snapshot) => progress.push(snapshot));
    f.events.on('runEnd', (report, run) => seen.push(`end ${run.kind} ${report.status}`));

    const report = await f.sync('library');
    expect(report).toMatchObject({ status: 'ok', totals: { artifacts: { planned: 2, copied: 2, failed: 0 } } });
    expect(seen[0]).toBe('start sync');
    expect(seen).toContain('planned library 2');
    expect(seen.filter((s) => s.startsWith('artifact library copied')).sort()).toEqual([
      'artifact library copied dst/lib/library/app:1.0',
      'artifact library copied dst/lib/library/db:1.0',
    ]);
    expect(seen.at(-1)).toBe('end sync ok');
    // progressIntervalMs 0: one snapshot, at the end, complete
    expect(progress).toHaveLength(1);
    expect(progress[0]).toMatchObject({ artifacts: { done: 2, total: 2, failed: 0 }, etaSeconds: 0 });
    expect(progress[0]!.bytes).toBeGreaterThan(30_000);
    // A plain registry lists no sizes: the bytes planned come from the manifests as they are read,
    // and a finished run has done exactly what it planned (sent, or already there).
    expect(progress[0]!.bytesPlanned).toEqual({ bytes: progress[0]!.bytesTotal, artifacts: 2 });
    expect(progress[0]!.bytesDone).toBe(progress[0]!.bytesTotal);
    expect(progress[0]!.bytesTotal).toBeGreaterThanOrEqual(progress[0]!.bytes);
    expect(report.rules[0]!.bytesPlanned).toBe(progress[0]!.bytesTotal);
    expect(f.progress()?.artifacts.done).toBe(2);
    expect((await getManifest(destination, 'lib/library/app', '1.0'))?.digest).toBe(digests['library/app']);
  });

  it('verify() audits the destination: the synced rule matches, the other lacks every artifact', async () => {
    const f = ferry();
    const synced = await f.verify('library');
    expect(synced).toMatchObject({ kind: 'verify', status: 'match', totals: { artifacts: { checked: 2, matching: 2, differing: 0 }, differences: 0 } });
    const seen: string[] = [];
    const missing = await f.verify(['all'], { onDifference: (d) => seen.push(`${d.destination} ${d.what}`) });
    expect(missing.status).toBe('differs');
    expect(missing.totals.artifacts).toEqual({ checked: 4, matching: 0, differing: 4 });
    expect(seen.sort()).toEqual(REPOS.map((r) => `dst/all/${r}:1.0 missing`).sort());
    expect(missing.rules[0]!.differences).toHaveLength(4);
    await expect(f.verify('nope')).rejects.toThrow(UnknownRuleError);
  });

  it('streams events through watch() until the run settles', async () => {
    const f = ferry(config(), { progressIntervalMs: 0 });
    const run = f.sync(['all'], { shard: '0/2' });
    const events: FerryEvent[] = [];
    for await (const e of f.watch({ until: run })) events.push(e);
    const report = await run;
    const mine = REPOS.filter((r) => shardOf(r, 2) === 0);
    expect(mine.length).toBeGreaterThan(0);
    expect(report.totals.artifacts.copied).toBe(mine.length);
    expect(events[0]).toMatchObject({ type: 'runStart', run: { kind: 'sync' } });
    expect(events.filter((e) => e.type === 'artifact')).toHaveLength(mine.length);
    expect(events.at(-1)).toMatchObject({ type: 'runEnd', report: { status: 'ok' } });
    for (const repo of REPOS) expect(await listTags(destination, `all/${repo}`), repo).toEqual(shardOf(repo, 2) === 0 ? ['1.0'] : []);

    // the other shard completes the rule
    const rest = await f.sync('all', { shard: { index: 1, count: 2 } });
    expect(rest.totals.artifacts.copied).toBe(REPOS.length - mine.length);
    await expect(f.sync('all', { shard: '2/2' })).rejects.toThrow(ShardError);
  });

  it('copies one image by config name or by host, the tag defaulting to the source tag', async () => {
    const f = ferry();
    const byName = await f.copy('src/team/svc:1.0', 'dst/copies/svc');
    expect(byName).toMatchObject({ status: 'ok', totals: { artifacts: { copied: 1 } } });
    expect(byName.rules[0]!.items[0]!.digest).toBe(digests['team/svc']);
    expect((await getManifest(destination, 'copies/svc', '1.0'))?.digest).toBe(digests['team/svc']);

    // a host that is not in the config (loopback: http, as docker does); a new tag
    const byHost = await f.copy(`${source.host}/library/db@${digests['library/db']}`, { registry: 'dst', repository: 'copies/db', reference: 'pinned' });
    expect(byHost.status).toBe('ok');
    expect((await getManifest(destination, 'copies/db', 'pinned'))?.digest).toBe(digests['library/db']);
  });

  it('loads a YAML file with ${ENV} from options.env; sets the bandwidth', async () => {
    const file = join(dir, 'ferry.yaml');
    const cfg = config();
    (cfg.registries.dst as { password?: string }).password = '${DST_PASSWORD}';
    writeFileSync(file, stringify(cfg));
    const f = ferry(file, { env: { DST_PASSWORD: 's3cret' } });
    expect(f.config.registries.dst!.password).toBe('s3cret');
    expect(f.config.transfer.concurrency).toBe(4);
    f.setBandwidth('80Mbps');
    f.setBandwidth(0);
    f.setBandwidth('1MB/s', 'library');
    expect(() => f.setBandwidth('fast')).toThrow(RangeError);
    expect(() => f.setBandwidth('1MB/s', 'nope')).toThrow(UnknownRuleError);
    const report = await f.sync('library'); // already there
    expect(report.totals.artifacts).toMatchObject({ copied: 0, present: 2 });
  });

  it('reports errors as the CLI does: ConfigError, UnknownRuleError, PreflightError', async () => {
    expect(() => createFerry({ ...config(), transfer: { concurency: 2 } } as never)).toThrow(ConfigError);
    try {
      createFerry({ ...config(), transfer: { concurency: 2 } } as never);
    } catch (err) {
      expect((err as ConfigError).problems).toEqual([{ path: 'transfer.concurency', message: 'unknown key "concurency"' }]);
    }
    expect(() => createFerry(join(dir, 'missing.yaml'))).toThrow(/cannot read file/);

    const f = ferry();
    await expect(f.sync('nope')).rejects.toThrow(UnknownRuleError);
    const runErrors: Error[] = [];
    const wrong = ferry(config({ registries: { src: { url: source.url }, dst: { url: destination.url, username: 'ferry', password: 'wrong' } } }));
    wrong.events.on('runError', (err) => runErrors.push(err));
    await expect(wrong.sync()).rejects.toThrow(PreflightError);
    expect(runErrors).toHaveLength(1);
  });

  it('close() ends watchers, and the object is unusable afterwards', async () => {
    const f = createFerry(config(), { stateDir: false });
    const it = f.watch();
    const next = it.next();
    await f.close();
    expect(await next).toEqual({ value: undefined, done: true });
    await expect(f.sync()).rejects.toThrow(/closed/);
    await f.close(); // idempotent
  });
});

describe('package', () => {
  it('exports dist/index.js, built from src/index.ts', () => {
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8'));
    expect(pkg.exports['.']).toEqual({ types: './dist/index.d.ts', import: './dist/index.js' });
    const build = JSON.parse(readFileSync(join(REPO_ROOT, 'tsconfig.build.json'), 'utf8'));
    expect(build.compilerOptions).toMatchObject({ rootDir: 'src', outDir: 'dist' });
  });
});

function runExample(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: REPO_ROOT, env: { ...process.env, DST_PASSWORD: 's3cret' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('examples', () => {
  it('examples/sync.ts and examples/copy.ts run against real registries', async () => {
    const file = join(dir, 'example.yaml');
    const cfg = config({ transfer: { concurrency: 2, stateDir: join(dir, 'example-state') } });
    (cfg.registries.dst as { password?: string }).password = '${DST_PASSWORD}';
    cfg.rules = [{ name: 'example', source: 'src', destination: 'dst', destinationNamespace: 'example' }];
    writeFileSync(file, stringify(cfg));
    const [sync, copy] = await Promise.all([
      runExample(['examples/sync.ts', file, 'example']),
      runExample(['examples/copy.ts', file, 'src/library/app:1.0', 'dst/example-copy/app']),
    ]);
    expect(sync.code, sync.stderr).toBe(0);
    expect(sync.stderr).toContain('example: 4 artifact(s) to copy');
    expect(sync.stdout).toMatch(/total: 4 copied, 0 present, 0 skipped, 0 failed/);
    expect(copy.code, copy.stderr).toBe(0);
    expect(JSON.parse(copy.stdout)).toEqual({ status: 'ok', digest: digests['library/app'], destination: 'dst/example-copy/app', tags: ['1.0'] });
    expect(copy.stderr).toMatch(/copied dst\/example-copy\/app:1\.0 sha256:/);
  });
});

// The command-line contract (README.md, docs/operations.md "Signals and exit codes") through a real process against real registries:
// exit codes 0 / 1 / 2 / 3, `--output json` = exactly one JSON document on stdout (logs on stderr),
// `--dry-run` plans without writing, `--help`.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { type TestRegistry, buildImage, buildSchema1, catalog, getFreePort, getManifest, pushImage, randomBlob, startRegistry } from '../helpers/index.js';
import { logRecords, runFerry } from './run.js';

let source: TestRegistry;
let destination: TestRegistry;
const dir = mkdtempSync(join(tmpdir(), 'ferry-cli-'));
const digests: Record<string, string> = {};

function writeConfig(name: string, config: Record<string, unknown>): string {
  const file = join(dir, name);
  writeFileSync(file, stringify(config));
  return file;
}

function baseConfig(overrides: { dstUrl?: string; password?: string } = {}) {
  return {
    registries: {
      src: { url: source.url },
      dst: { url: overrides.dstUrl ?? destination.url, username: 'ferry', password: '${DST_PASSWORD}' },
    },
    transfer: { concurrency: 4, retries: 0, stateDir: join(dir, 'state') },
    rules: [
      { name: 'good', source: 'src', destination: 'dst', destinationNamespace: 'mirror', filters: { repositories: ['library/**', 'team/**'] } },
      { name: 'mixed', source: 'src', destination: 'dst', destinationNamespace: 'mixed' },
    ],
  };
}

const env = { DST_PASSWORD: 's3cret' };
let configFile: string;

beforeAll(async () => {
  [source, destination] = await Promise.all([startRegistry({ auth: 'none', schema1: true }), startRegistry({ auth: 'basic' })]);
  const base = randomBlob(40_000);
  const pushes: [string, string, ReturnType<typeof buildImage>][] = [
    ['library/app', '1.0', buildImage({ layers: [base, randomBlob(10_000)] })],
    ['library/app', '1.1', buildImage({ layers: [base, randomBlob(11_000)] })],
    ['team/svc', 'v1', buildImage({ layers: [randomBlob(12_000)], format: 'docker' })],
  ];
  for (const [repo, tag, image] of pushes) digests[`${repo}:${tag}`] = (await pushImage(source, repo, tag, image)).digest;
  // distribution 2.8 accepts it (schema1: true); Ferry refuses to copy schema 1: one failed artifact.
  await pushImage(source, 'legacy/old', 'v1', buildSchema1('legacy/old', 'v1'));
  configFile = writeConfig('ferry.yaml', baseConfig());
}, 60_000);

afterAll(async () => {
  await Promise.all([source?.stop(), destination?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

describe('ferry CLI', () => {
  it('--help works (exit 0) and documents the sync options', async () => {
    const [top, sync] = await Promise.all([runFerry(['--help']), runFerry(['sync', '--help'])]);
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/^Usage: ferry \[options\] \[command\]/);
    for (const cmd of ['sync', 'plan', 'check', 'copy', 'daemon']) expect(top.stdout).toContain(`  ${cmd}`);
    expect(sync.code).toBe(0);
    for (const opt of ['--config', '--rule', '--dry-run', '--output', '--state-dir', '--shard <i/n>', '--shards <n>', '--quiet']) expect(sync.stdout).toContain(opt);
  });

  it('--dry-run lists the planned copies and writes nothing (exit 0; 1 when something would fail)', async () => {
    const json = await runFerry(['sync', '--config', configFile, '--rule', 'good', '--dry-run', '--output', 'json'], { env });
    expect(json.code, json.stderr).toBe(0);
    const report = JSON.parse(json.stdout);
    expect(report).toMatchObject({ dryRun: true, status: 'planned', totals: { artifacts: { planned: 3, copied: 0 } } });
    const planned = report.rules[0].plan.map((p: { source: string; destination: string }) => `${p.source} -> ${p.destination}`).sort();
    expect(planned).toEqual(['src/library/app:1.0 -> dst/mirror/library/app:1.0', 'src/library/app:1.1 -> dst/mirror/library/app:1.1', 'src/team/svc:v1 -> dst/mirror/team/svc:v1']);

    // The legacy schema 1 image would fail the sync: the plan exits 1 too (CI gates on it).
    const text = await runFerry(['sync', '--config', configFile, '--dry-run'], { env });
    expect(text.code, text.stderr).toBe(1);
    // Each line says what a sync would do, and what it would move.
    expect(text.stdout).toMatch(/\n  copy +src\/team\/svc:v1 -> dst\/mirror\/team\/svc:v1 \(\d+ blob\(s\), [\d.]+ KiB\)\n/);
    expect(text.stdout).toMatch(/\n  error +src\/legacy\/old:v1 -> dst\/mixed\/legacy\/old:v1 \(.*schema 1/);
    expect(text.stdout).toMatch(/dry run: 7 artifact\(s\) planned, nothing copied\n$/);

    expect(await catalog(destination)).toEqual([]);
  });

  it('copies everything (exit 0); --output json makes stdout exactly one JSON document, logs go to stderr', async () => {
    const res = await runFerry(['sync', '--config', configFile, '--rule', 'good', '--output', 'json'], { env });
    expect(res.code, res.stderr).toBe(0);
    const report = JSON.parse(res.stdout); // throws unless stdout is one JSON document and nothing else
    expect(res.stdout.trim().startsWith('{')).toBe(true);
    expect(report).toMatchObject({ version: 1, status: 'ok', totals: { artifacts: { planned: 3, copied: 3, failed: 0 } } });
    expect(logRecords(res.stderr).length).toBeGreaterThan(0);
    for (const [ref, digest] of Object.entries(digests)) {
      const [repo, tag] = ref.split(':') as [string, string];
      expect((await getManifest(destination, `mirror/${repo}`, tag))?.digest).toBe(digest);
    }
  });

  it('exits 1 when some artifacts fail and still copies the others', async () => {
    const res = await runFerry(['sync', '--config', configFile, '--rule', 'mixed', '--output', 'json'], { env });
    expect(res.code, res.stderr).toBe(1);
    const report = JSON.parse(res.stdout);
    expect(report.status).toBe('partial');
    expect(report.totals.artifacts).toMatchObject({ planned: 4, failed: 1 });
    expect(report.totals.artifacts.copied + report.totals.artifacts.present).toBe(3);
    const failed = report.rules[0].items.filter((i: { status: string }) => i.status === 'failed');
    expect(failed).toHaveLength(1);
    expect(failed[0].source).toContain('legacy/old');
    expect((await getManifest(destination, 'mixed/team/svc', 'v1'))?.digest).toBe(digests['team/svc:v1']);

    const text = await runFerry(['sync', '--config', configFile, '--rule', 'mixed', '--quiet'], { env });
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(/FAILED src\/legacy\/old/);
  });

  describe.concurrent('errors', () => {
    // Concurrent runs: each its own state directory (a state directory serves one process at a time).
    const own = (extra: Record<string, string> = {}) => ({ ...env, FERRY_STATE_DIR: mkdtempSync(join(dir, 'state-')), ...extra });

    it('exits 2 on an unknown config key, naming the file and the key path', async () => {
      const bad = writeConfig('bad.yaml', { ...baseConfig(), transfer: { concurency: 4 } });
      const res = await runFerry(['sync', '--config', bad, '--output', 'json'], { env: own() });
      expect(res.code).toBe(2);
      // --output json: stdout is still one JSON document, the error's.
      expect(JSON.parse(res.stdout)).toMatchObject({ status: 'error', exitCode: 2, error: { name: 'ConfigError', file: bad } });
      expect(res.stderr).toContain(bad);
      expect(res.stderr).toMatch(/transfer\.concurency: unknown key "concurency"/);
    });

    it('exits 2 on an unknown rule', async () => {
      const res = await runFerry(['sync', '--config', configFile, '--rule', 'nope'], { env: own() });
      expect(res.code).toBe(2);
      expect(res.stderr).toMatch(/unknown rule "nope" \(defined: good, mixed\)/);
    });

    it('exits 2 on invalid arguments (bad --shard, unknown option, missing --config)', async () => {
      const [shard, option, missing] = await Promise.all([
        runFerry(['sync', '--config', configFile, '--shard', '3/3'], { env: own() }),
        runFerry(['sync', '--config', configFile, '--frobnicate'], { env: own() }),
        runFerry(['sync'], { env: own() }),
      ]);
      expect(shard.code).toBe(2);
      expect(shard.stderr).toMatch(/--shard: shard index 3 is out of range for 3 shard\(s\): indexes are 0-based/);
      expect(option.code).toBe(2);
      expect(option.stderr).toMatch(/unknown option '--frobnicate'/);
      expect(missing.code).toBe(2);
      expect(missing.stderr).toMatch(/--config FILE is required/);
    });

    it('exits 3 when a registry refuses the credentials, and copies nothing', async () => {
      const res = await runFerry(['sync', '--config', configFile, '--output', 'json'], { env: own({ DST_PASSWORD: 'wrong' }) });
      expect(res.code).toBe(3);
      expect(JSON.parse(res.stdout)).toMatchObject({ status: 'error', exitCode: 3, error: { name: 'PreflightError' } });
      expect(res.stderr).toMatch(/registry check failed:\n\s+dst: /);
      expect(res.stderr + res.stdout).not.toContain('wrong');
    });

    it('exits 3 when a registry cannot be reached', async () => {
      const port = await getFreePort(); // nothing listens there
      const file = writeConfig('unreachable.yaml', baseConfig({ dstUrl: `http://127.0.0.1:${port}` }));
      const res = await runFerry(['sync', '--config', file], { env: own() });
      expect(res.code, res.stderr).toBe(3);
      expect(res.stderr).toMatch(/registry check failed:\n\s+dst: /);
    });

    it('exits 3 when the state database (state.url) cannot be reached, naming it without its password', async () => {
      const port = await getFreePort(); // nothing listens there
      const file = writeConfig('state-gone.yaml', { ...baseConfig(), state: { url: `postgres://ferry:pgsecret@127.0.0.1:${port}/ferry` } });
      const res = await runFerry(['sync', '--config', file], { env: own() });
      expect(res.code, res.stderr).toBe(3);
      expect(res.stderr).toContain(`state database postgres://ferry@127.0.0.1:${port}/ferry: cannot connect`);
      expect(res.stderr).not.toContain('pgsecret');
      expect(res.stderr).not.toMatch(/\n\s+at /); // no stack trace
    });
  });
});

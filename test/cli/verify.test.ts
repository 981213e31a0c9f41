// `ferry verify` through the real CLI against real registries: after a sync everything matches
// (exit 0); then the destination is damaged the ways Harbor users have met ("replication succeeded"
// with blobs missing): a blob deleted from the registry's storage directory, a tag pushed over, a
// child manifest of an index gone, a cosign signature gone. Each difference is named (exit 1), and
// verify writes nothing.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { stringify } from 'yaml';
import { type TestImage, type TestIndex, type TestRegistry, buildImage, buildMultiArch, buildSignature, catalog, pushImage, randomBlob, startRegistry } from '../helpers/index.js';
import { parseConfig } from '../../src/config/load.js';
import { Engine } from '../../src/engine/engine.js';
import { verifyRules } from '../../src/engine/verify.js';
import { runFerry } from './run.js';

let source: TestRegistry;
let destination: TestRegistry;
const dir = mkdtempSync(join(tmpdir(), 'ferry-cli-verify-'));
let configFile: string;
let config: Record<string, unknown>;
let app: TestImage;
let other: TestImage;
let multi: TestIndex;
let signed: TestImage;
let signature: TestImage & { tag: string };

/** distribution's filesystem layout: what an operator would find under the storage root. */
function blobPath(reg: TestRegistry, digest: string): string {
  const hex = digest.replace('sha256:', '');
  return join(reg.storageDir, 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex);
}
function manifestRevision(reg: TestRegistry, repo: string, digest: string): string {
  return join(reg.storageDir, 'docker', 'registry', 'v2', 'repositories', repo, '_manifests', 'revisions', 'sha256', digest.replace('sha256:', ''));
}
function tagDir(reg: TestRegistry, repo: string, tag: string): string {
  return join(reg.storageDir, 'docker', 'registry', 'v2', 'repositories', repo, '_manifests', 'tags', tag);
}

beforeAll(async () => {
  [source, destination] = await Promise.all([startRegistry({ auth: 'none' }), startRegistry({ auth: 'none' })]);
  app = buildImage({ layers: [randomBlob(3000), randomBlob(2000)] });
  other = buildImage({ layers: [randomBlob(1000)] });
  multi = buildMultiArch('oci', [700, 900]);
  signed = buildImage({ layers: [randomBlob(1500)] });
  signature = buildSignature(signed.descriptor);
  await pushImage(source, 'library/app', '1.0', app);
  await pushImage(source, 'library/app', '2.0', buildImage({ layers: [randomBlob(1200)] }));
  await pushImage(source, 'library/multi', '1', multi);
  await pushImage(source, 'library/signed', '1', signed);
  await pushImage(source, 'library/signed', signature.tag, signature);
  configFile = join(dir, 'ferry.yaml');
  config = {
    registries: { src: { url: source.url }, dst: { url: destination.url } },
    transfer: { retries: 0, stateDir: join(dir, 'state') },
    rules: [{ name: 'mirror', source: 'src', destination: 'dst', destinationNamespace: 'm', filters: { repositories: ['library/**'] } }],
  };
  writeFileSync(configFile, stringify(config));
  const sync = await runFerry(['sync', '--config', configFile, '--quiet']);
  expect(sync.code, sync.stderr).toBe(0);
}, 120_000);

afterAll(async () => {
  await Promise.all([source?.stop(), destination?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

describe('ferry verify', { timeout: 150_000 }, () => {
  it('exits 0 when every tag, child, blob and referrer is at the destination', async () => {
    const res = await runFerry(['verify', '--config', configFile, '--output', 'json']);
    expect(res.code, res.stderr).toBe(0);
    const report = JSON.parse(res.stdout);
    expect(report).toMatchObject({ kind: 'verify', status: 'match', totals: { differences: 0 } });
    expect(report.totals.artifacts.checked).toBeGreaterThanOrEqual(4);
    expect(report.totals.artifacts.differing).toBe(0);
  });

  it('names each difference (missing blob, other digest, missing child, missing referrer) and exits 1; writes nothing', async () => {
    const layer = app.layers[1]!.digest;
    rmSync(blobPath(destination, layer), { recursive: true, force: true });
    await pushImage(destination, 'm/library/app', '2.0', other); // retagged at the destination
    const child = multi.children[1]!;
    rmSync(manifestRevision(destination, 'm/library/multi', child.digest), { recursive: true, force: true });
    rmSync(tagDir(destination, 'm/library/signed', signature.tag), { recursive: true, force: true });
    const before = await catalog(destination);
    const stateDir = join(dir, 'verify-state');

    const [json, text] = await Promise.all([
      runFerry(['verify', '--config', configFile, '--output', 'json'], { env: { FERRY_STATE_DIR: stateDir } }),
      runFerry(['verify', '--config', configFile, '--rule', 'mirror']),
    ]);
    expect(json.code, json.stderr).toBe(1);
    const report = JSON.parse(json.stdout);
    expect(report.status).toBe('differs');
    const diffs = report.rules[0].differences as { source: string; destination: string; what: string; digest?: string; actual?: string }[];
    expect(diffs).toContainEqual(expect.objectContaining({ source: 'src/library/app:1.0', destination: 'dst/m/library/app:1.0', what: 'blob missing', digest: layer }));
    expect(diffs).toContainEqual(expect.objectContaining({ source: 'src/library/app:2.0', destination: 'dst/m/library/app:2.0', what: 'other digest', actual: other.digest }));
    expect(diffs).toContainEqual(expect.objectContaining({ source: 'src/library/multi:1', destination: 'dst/m/library/multi:1', what: 'child missing', digest: child.digest }));
    expect(diffs).toContainEqual(expect.objectContaining({ source: 'src/library/signed:1', destination: 'dst/m/library/signed:1', what: 'referrer missing' }));
    expect(diffs, JSON.stringify(diffs, null, 1)).toHaveLength(4);
    expect(report.totals.artifacts).toMatchObject({ differing: 4 });

    expect(text.code).toBe(1);
    expect(text.stdout).toContain(`  DIFF src/library/app:1.0 -> dst/m/library/app:1.0: blob missing ${layer}`);
    expect(text.stdout).toContain(`  DIFF src/library/app:2.0 -> dst/m/library/app:2.0: other digest: ${other.digest} instead of `);
    expect(text.stdout).toMatch(/DIFF src\/library\/signed:1 -> dst\/m\/library\/signed:1: referrer missing .*\(tag sha256-[0-9a-f]{64}\.sig\)/);
    expect(text.stdout).toMatch(/verify: \d+ artifact\(s\) checked, \d+ matching, 4 differing, 4 difference\(s\) \(differs\)\n$/);

    // Read-only: nothing new at the destination, no state written.
    expect(await catalog(destination)).toEqual(before);
    expect(existsSync(stateDir)).toBe(false);
  });

  it('streams the plan one repository at a time (never the whole plan) and keeps differences up to the cap, counting the rest', async () => {
    const engine = new Engine(parseConfig(config), { stateDir: false });
    try {
      const whole = vi.spyOn(engine, 'plan');
      const streamed = vi.spyOn(engine, 'planRepositories');
      const report = await verifyRules(engine, engine.selectRules(), { maxDifferences: 2, concurrency: 1 });
      expect(whole).not.toHaveBeenCalled();
      expect(streamed).toHaveBeenCalledTimes(1);
      expect(report.status).toBe('differs');
      expect(report.rules[0]!.differences).toHaveLength(2);
      expect(report.rules[0]!.differencesTotal).toBe(4);
      expect(report.rules[0]!.differencesOmitted).toBe(2);
      expect(report.totals).toMatchObject({ differences: 4, artifacts: { differing: 4 } });
    } finally {
      await engine.close();
    }
  });

  it('a missing destination repository is "missing"; an unknown rule exits 2; an unreachable registry 3', async () => {
    rmSync(join(destination.storageDir, 'docker', 'registry', 'v2', 'repositories', 'm', 'library', 'signed'), { recursive: true, force: true });
    const down = join(dir, 'down.yaml');
    writeFileSync(down, stringify({ registries: { src: { url: source.url }, dst: { url: 'http://127.0.0.1:9' } }, rules: [{ name: 'r', source: 'src', destination: 'dst' }] }));
    const [res, unknown, unreachable] = await Promise.all([
      runFerry(['verify', '--config', configFile, '--output', 'json']),
      runFerry(['verify', '--config', configFile, '--rule', 'nope']),
      runFerry(['verify', '--config', down, '--output', 'json']),
    ]);
    expect(res.code).toBe(1);
    const diffs = JSON.parse(res.stdout).rules[0].differences as { destination: string; what: string }[];
    expect(diffs).toContainEqual(expect.objectContaining({ destination: 'dst/m/library/signed:1', what: 'missing' }));
    expect(unknown.code).toBe(2);
    expect(unreachable.code).toBe(3);
    expect(JSON.parse(unreachable.stdout)).toMatchObject({ status: 'error', exitCode: 3 });
  });
});

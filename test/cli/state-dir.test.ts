// `ferry plan` reads the state where `ferry sync` wrote it: FERRY_STATE_DIR and --state-dir choose the
// directory for both (over transfer.stateDir), so the deleteRemote deletions a plan lists are the
// ones the next sync on that directory would make.
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { type TestRegistry, buildImage, deleteManifest, pushImage, startRegistry } from '../helpers/index.js';
import { runFerry } from './run.js';

let source: TestRegistry;
let destination: TestRegistry;
const dir = mkdtempSync(join(tmpdir(), 'ferry-cli-statedir-'));
const configFile = join(dir, 'ferry.yaml');
/** transfer.stateDir of the config: never written when the environment or the flag names another. */
const configured = join(dir, 'configured');

beforeAll(async () => {
  [source, destination] = await Promise.all([startRegistry(), startRegistry()]);
  writeFileSync(
    configFile,
    stringify({
      registries: { src: { url: source.url }, dst: { url: destination.url } },
      transfer: { retries: 0, stateDir: configured },
      rules: [{ name: 'r', source: 'src', destination: 'dst', destinationNamespace: 'm', deleteRemote: true }],
    }),
  );
});

afterAll(async () => Promise.all([source?.stop(), destination?.stop()]));

const deletions = (stdout: string): string[] =>
  (JSON.parse(stdout) as { rules: { plan?: { action: string; destination: string }[] }[] }).rules[0]!.plan!.filter((p) => p.action === 'delete').map((p) => p.destination);

describe('state directory of plan and sync', () => {
  it('plan reads the state from FERRY_STATE_DIR or --state-dir, as sync writes it there', async () => {
    const image = buildImage({ layers: [600] });
    await pushImage(source, 'app', 'v1', image);
    await pushImage(source, 'app', 'v2', buildImage({ layers: [601] }));
    const fromEnv = join(dir, 'env');
    const synced = await runFerry(['sync', '--config', configFile, '--quiet'], { env: { FERRY_STATE_DIR: fromEnv } });
    expect(synced.code, synced.stderr).toBe(0);
    expect(existsSync(join(fromEnv, 'ferry.db'))).toBe(true);
    expect(existsSync(configured)).toBe(false);
    await deleteManifest(source, 'app', image.digest);

    const [env, flag, config] = await Promise.all([
      runFerry(['plan', '--config', configFile, '--output', 'json'], { env: { FERRY_STATE_DIR: fromEnv } }),
      runFerry(['plan', '--config', configFile, '--output', 'json', '--state-dir', fromEnv], { env: { FERRY_STATE_DIR: join(dir, 'elsewhere') } }),
      runFerry(['plan', '--config', configFile, '--output', 'json']),
    ]);
    expect(env.code, env.stderr).toBe(0);
    expect(deletions(env.stdout)).toEqual(['dst/m/app:v1']);
    expect(flag.code, flag.stderr).toBe(0);
    expect(deletions(flag.stdout)).toEqual(['dst/m/app:v1']);
    // transfer.stateDir holds no memory of that sync: nothing to delete, and plan created nothing there.
    expect(config.code, config.stderr).toBe(0);
    expect(deletions(config.stdout)).toEqual([]);
    expect(existsSync(configured)).toBe(false);
  });
});

// What a new user meets at the keyboard (issue 15): --version, log level typos, `copy` with host:port
// references, a missing caFile, hints for common mistakes, one JSON document on stdout whatever the
// exit code, `plan` gating CI, and the daemon's ${VARS} not needed by one-shot commands.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { type TestRegistry, buildImage, getManifest, pushImage, randomBlob, startRegistry } from '../helpers/index.js';
import { runFerry } from './run.js';

let source: TestRegistry;
let destination: TestRegistry;
const dir = mkdtempSync(join(tmpdir(), 'ferry-cli-use-'));
let digest: string;

function writeConfig(name: string, config: Record<string, unknown>): string {
  const file = join(dir, name);
  writeFileSync(file, stringify(config));
  return file;
}

function config(extra: Record<string, unknown> = {}, registries: Record<string, unknown> = {}) {
  return {
    registries: {
      src: { url: source.url },
      dst: { url: destination.url, username: 'ferry', password: 's3cret' },
      ...registries,
    },
    transfer: { retries: 0, stateDir: join(dir, 'state') },
    rules: [{ name: 'all', source: 'src', destination: 'dst', destinationNamespace: 'mirror' }],
    ...extra,
  };
}

beforeAll(async () => {
  [source, destination] = await Promise.all([startRegistry({ auth: 'none' }), startRegistry({ auth: 'basic' })]);
  digest = (await pushImage(source, 'library/app', '1.0', buildImage({ layers: [randomBlob(5000)] }))).digest;
  await pushImage(source, 'team/app', '1.0', buildImage({ layers: [randomBlob(5000)] }));
}, 60_000);

afterAll(async () => {
  await Promise.all([source?.stop(), destination?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

describe('ferry at the keyboard', { timeout: 150_000 }, () => {
  it('--version prints the package version (exit 0); no arguments print the help (exit 0)', async () => {
    const [version, bare] = await Promise.all([runFerry(['--version']), runFerry([])]);
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    expect(bare.code).toBe(0);
    expect(bare.stdout).toMatch(/^Usage: ferry/);
  });

  it('an unknown --log-level or FERRY_LOG_LEVEL is a usage error (exit 2), not a stack trace', async () => {
    const file = writeConfig('levels.yaml', config());
    const [flag, env, format] = await Promise.all([
      runFerry(['--log-level', 'verbose', 'check', '--config', file]),
      runFerry(['check', '--config', file], { env: { FERRY_LOG_LEVEL: 'verbose' } }),
      runFerry(['--log-format', 'fancy', 'check', '--config', file]),
    ]);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(/--log-level: unknown level "verbose" \(expected one of fatal \| error \| warn \| info \| debug \| trace \| silent\)/);
    expect(flag.stderr).not.toMatch(/\n\s+at /);
    expect(env.code).toBe(2);
    expect(env.stderr).toMatch(/FERRY_LOG_LEVEL: unknown level "verbose"/);
    expect(format.code).toBe(2);
    expect(format.stderr).toMatch(/--log-format: unknown format "fancy" \(expected json \| pretty\)/);
  });

  it('--log-format pretty writes one readable line per record; json (the default off a terminal) JSON lines', async () => {
    const file = writeConfig('pretty.yaml', config());
    const [pretty, json] = await Promise.all([
      runFerry(['--log-format', 'pretty', 'sync', '--config', file, '--rule', 'all', '--quiet']),
      runFerry(['plan', '--config', file], { env: { FERRY_LOG_LEVEL: 'debug' } }),
    ]);
    expect(pretty.code, pretty.stderr).toBe(0);
    const lines = pretty.stderr.split('\n').filter((l) => l.trim());
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) expect(line).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] (INFO|WARN|DEBUG|ERROR)( \(\w+\))?: /);
    expect(pretty.stderr).toMatch(/INFO.*: artifact copied/);
    const records = json.stderr.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as Record<string, unknown>);
    // --log-level debug: one record per HTTP request (method, URL without query, status, time), no secrets.
    const requests = records.filter((r) => r.method && r.url);
    expect(requests).toContainEqual(expect.objectContaining({ level: 20, registry: 'dst', method: 'GET', url: `${destination.url}/v2/`, status: 200, durationMs: expect.any(Number) }));
    expect(requests.some((r) => r.status === 401)).toBe(true); // the challenge before the credentials
    expect(json.stderr).not.toContain('s3cret');
    expect(json.stderr).not.toMatch(/authorization/i);
  });

  it('copy takes host:port references, and uses the config registry of that host for its credentials', async () => {
    const file = writeConfig('copy.yaml', config());
    const res = await runFerry(['copy', `${source.host}/library/app:1.0`, `${destination.host}/adhoc/app:x`, '--config', file, '--output', 'json']);
    expect(res.code, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({ status: 'ok', totals: { artifacts: { copied: 1 } } });
    expect((await getManifest(destination, 'adhoc/app', 'x'))?.digest).toBe(digest);
    expect(res.stderr).not.toContain('<inline>');
  });

  it('copy without a config: hosts with ports, plain HTTP on loopback', async () => {
    const res = await runFerry(['copy', `${source.host}/library/app:1.0`, `${source.host}/copied/app`, '--quiet']);
    expect(res.code, res.stderr).toBe(0);
    expect((await getManifest(source, 'copied/app', '1.0'))?.digest).toBe(digest);
  });

  it('copy with a registry name typed wrong fails at once (exit 2), naming the registries defined', async () => {
    const file = writeConfig('typo.yaml', config());
    const res = await runFerry(['copy', 'scr/library/app:1.0', 'dst/x/app:1', '--config', file]);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/unknown registry "scr" \(defined: src, dst\); a host needs a dot or a port/);
  });

  it('a caFile that does not exist is a config error (exit 2) in check, sync, plan and copy', async () => {
    const missing = join(dir, 'no-such-ca.pem');
    const file = writeConfig('ca.yaml', config({}, { dst: { url: destination.url, username: 'ferry', password: 's3cret', caFile: missing } }));
    const runs = await Promise.all([
      runFerry(['check', '--config', file]),
      runFerry(['sync', '--config', file]),
      runFerry(['plan', '--config', file]),
      runFerry(['copy', 'src/library/app:1.0', 'dst/x/app', '--config', file]),
    ]);
    for (const res of runs) {
      expect(res.code, res.stderr).toBe(2);
      expect(res.stderr).toContain(file);
      expect(res.stderr).toContain(`registries.dst.caFile: cannot read ${JSON.stringify(missing)}: no such file`);
      expect(res.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it('--output json prints one JSON document also on exit 2 and 3', async () => {
    const bad = writeConfig('bad.yaml', { ...config(), transfer: { concurency: 1 } });
    const unreachable = writeConfig('down.yaml', config({}, { dst: { url: 'http://127.0.0.1:9', username: 'a', password: 'b' } }));
    const [invalid, down, usage] = await Promise.all([
      runFerry(['sync', '--config', bad, '--output', 'json']),
      runFerry(['sync', '--config', unreachable, '--output', 'json']),
      runFerry(['plan', '--config', bad, '--frobnicate', '-o', 'json']),
    ]);
    expect(invalid.code).toBe(2);
    expect(JSON.parse(invalid.stdout)).toMatchObject({ status: 'error', exitCode: 2, error: { name: 'ConfigError', file: bad, problems: [{ path: 'transfer.concurency' }] } });
    expect(down.code).toBe(3);
    expect(JSON.parse(down.stdout)).toMatchObject({ status: 'error', exitCode: 3, error: { name: 'PreflightError', failures: [{ registry: 'dst' }] } });
    expect(usage.code).toBe(2);
    expect(JSON.parse(usage.stdout)).toMatchObject({ status: 'error', exitCode: 2, error: { message: expect.stringContaining('--frobnicate') } });
  });

  it('a preflight failure names the registry once; https:// to a plain-HTTP registry gets a hint', async () => {
    const file = writeConfig('https.yaml', config({}, { dst: { url: `https://${destination.host}`, username: 'ferry', password: 's3cret' } }));
    const res = await runFerry(['sync', '--config', file]);
    expect(res.code).toBe(3);
    expect(res.stderr).not.toMatch(/dst: dst:/);
    expect(res.stderr).toMatch(/the registry seems to speak plain HTTP: use http:\/\/127\.0\.0\.1:\d+ as its url/);
  });

  it('plan exits 1 when the plan has problems that would make sync exit 1 (a collision)', async () => {
    const file = writeConfig('collide.yaml', config({ rules: [{ name: 'flat', source: 'src', destination: 'dst', destinationNamespace: 'flat', flatten: 'all', filters: { repositories: ['library/**', 'team/**'] } }] }));
    const res = await runFerry(['plan', '--config', file, '--output', 'json']);
    expect(res.code, res.stderr).toBe(1);
    expect(JSON.parse(res.stdout).rules[0].problems.length).toBeGreaterThan(0);
  });

  it('sync does not need the variables of the daemon section; the daemon does', async () => {
    const file = writeConfig('shared.yaml', config({ daemon: { listen: '127.0.0.1:0', token: '${FERRY_TEST_UNSET_TOKEN}' } }));
    const [sync, daemon] = await Promise.all([
      runFerry(['plan', '--config', file], { env: { FERRY_TEST_UNSET_TOKEN: undefined } }),
      runFerry(['daemon', '--config', file], { env: { FERRY_TEST_UNSET_TOKEN: undefined } }),
    ]);
    expect(sync.code, sync.stderr).toBe(0);
    expect(daemon.code).toBe(2);
    expect(daemon.stderr).toMatch(/daemon\.token: environment variable FERRY_TEST_UNSET_TOKEN is not set/);
  });
});

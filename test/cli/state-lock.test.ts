// One process per state directory, through the real CLI: a second `ferry sync` (or daemon) on a
// directory a live process holds exits 2 at once, naming the directory and the pid; `ferry plan` and
// dry runs read it without the lock; a lock left by a dead process is taken over.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { type TestRegistry, buildImage, pushImage, startRegistry } from '../helpers/index.js';
import { runFerry } from './run.js';

const HOLDER = fileURLToPath(new URL('../state/holder.ts', import.meta.url));
let source: TestRegistry;
let destination: TestRegistry;
let holder: ChildProcess | undefined;
const dir = mkdtempSync(join(tmpdir(), 'ferry-cli-lock-'));
const stateDir = join(dir, 'state');
const configFile = join(dir, 'ferry.yaml');

beforeAll(async () => {
  [source, destination] = await Promise.all([startRegistry(), startRegistry()]);
  await pushImage(source, 'library/app', 'v1', buildImage({ layers: [512] }));
  writeFileSync(
    configFile,
    stringify({
      registries: { src: { url: source.url }, dst: { url: destination.url } },
      transfer: { retries: 0, stateDir },
      rules: [{ name: 'r', source: 'src', destination: 'dst' }],
    }),
  );
});

afterAll(async () => {
  holder?.kill('SIGKILL');
  await Promise.all([source?.stop(), destination?.stop()]);
});

/** Another process holding the state directory (it opened the state and waits). */
function hold(): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', HOLDER, stateDir], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve(child));
    child.on('exit', (code) => reject(new Error(`holder exited ${code}`)));
  });
}

describe('one process per state directory', () => {
  it('a second sync or daemon exits 2 naming the directory and the pid; plan and dry runs still read', async () => {
    holder = await hold();
    const sync = await runFerry(['sync', '--config', configFile]);
    expect(sync.code).toBe(2);
    expect(sync.stderr).toContain(`state directory ${stateDir} is in use by process ${holder.pid}`);
    expect(sync.stdout).toBe('');

    const daemon = await runFerry(['daemon', '--config', configFile]);
    expect(daemon.code).toBe(2);
    expect(daemon.stderr).toContain(`process ${holder.pid}`);

    const plan = await runFerry(['plan', '--config', configFile, '--output', 'json']);
    expect(plan.code).toBe(0);
    expect(JSON.parse(plan.stdout)).toMatchObject({ dryRun: true, totals: { artifacts: { planned: 1 } } });
    const dry = await runFerry(['sync', '--config', configFile, '--dry-run', '--output', 'json']);
    expect(dry.code).toBe(0);
    expect(readFileSync(join(stateDir, 'ferry.lock'), 'utf8').split(' ')[0]).toBe(String(holder.pid));
  });

  it('takes over the lock of a process that died (SIGKILL) and syncs', async () => {
    if (!holder) holder = await hold();
    holder.kill('SIGKILL');
    await new Promise((r) => (holder!.exitCode !== null || holder!.signalCode !== null ? r(undefined) : holder!.once('exit', r)));
    expect(existsSync(join(stateDir, 'ferry.lock'))).toBe(true); // left behind by the kill
    const sync = await runFerry(['sync', '--config', configFile, '--output', 'json']);
    expect(sync.code).toBe(0);
    expect(JSON.parse(sync.stdout)).toMatchObject({ totals: { artifacts: { copied: 1 } } });
    expect(existsSync(join(stateDir, 'ferry.lock'))).toBe(false); // released at exit
  });
});

// The daemon on the state database: one state (and one lock) for its history and every engine it
// builds, across config reloads; its history survives a restart in the database.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Daemon } from '../../src/daemon/service.js';
import type { Engine } from '../../src/engine/engine.js';
import { openState } from '../../src/state/index.js';
import { daemonConfig, tempStateDir } from './fakes.js';

const daemons: Daemon[] = [];
afterEach(async () => {
  for (const d of daemons.splice(0)) await d.stop(0);
});

/** The engine the daemon uses now (EnginePool.engine; real engines, no registries reached). */
function currentEngine(d: Daemon): Engine {
  return (d as unknown as { engines: { engine: Engine } }).engines.engine;
}

describe('daemon state', () => {
  it('shares one state between its history and its engines, across config reloads', async () => {
    const stateDir = tempStateDir();
    const config = daemonConfig([{ name: 'r' }], {}, stateDir);
    const daemon = new Daemon({ config });
    daemons.push(daemon);
    await daemon.start();
    const first = currentEngine(daemon);
    expect(first.state).toBe(daemon.state);
    expect(daemon.reload({ ...config, rules: [...config.rules, { ...config.rules[0]!, name: 'r2' }] })).toEqual({ ok: true });
    const second = currentEngine(daemon);
    expect(second).not.toBe(first);
    expect(second.state).toBe(daemon.state);
    expect(daemon.state.info).toMatchObject({ kind: 'sqlite', readOnly: false });
  });

  it('holds the state directory: another process is refused while it runs, and the lock goes with stop()', async () => {
    const stateDir = tempStateDir();
    const daemon = new Daemon({ config: daemonConfig([{ name: 'r' }], {}, stateDir) });
    await daemon.start();
    expect(existsSync(join(stateDir, 'ferry.lock'))).toBe(true);
    // Same process: shared (engines, the API). Another process is refused: see test/cli/state-lock.test.ts.
    const same = openState({ stateDir });
    await same.close();
    await daemon.stop(0);
    expect(existsSync(join(stateDir, 'ferry.lock'))).toBe(false);
    const after = openState({ stateDir });
    expect(after.info.readOnly).toBe(false);
    await after.close();
  });
});

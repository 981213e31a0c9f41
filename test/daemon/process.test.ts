// runDaemon as `ferry daemon` runs it: config from a file, SIGHUP reloads (an invalid config is
// rejected and the old one kept), SIGTERM stops gracefully with exit code 143, an unusable config
// exits 2. Signals are delivered with process.emit while only the daemon's listeners are attached,
// so the test runner's own handlers never see them.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { runDaemon } from '../../src/daemon/index.js';
import { createLogger } from '../../src/log.js';
import { eventually, http } from './fakes.js';

const saved = new Map<string, NodeJS.SignalsListener[]>();
function isolateSignals(): void {
  for (const sig of ['SIGHUP', 'SIGTERM', 'SIGINT'] as const) {
    saved.set(sig, process.listeners(sig) as NodeJS.SignalsListener[]);
    process.removeAllListeners(sig);
  }
}
afterEach(() => {
  for (const [sig, listeners] of saved) {
    process.removeAllListeners(sig);
    for (const l of listeners) process.on(sig, l);
  }
  saved.clear();
});

function setup(rulesYaml: string, daemonYaml = 'listen: 127.0.0.1:0') {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-daemon-process-'));
  const file = join(dir, 'ferry.yaml');
  const write = (rules: string, daemon = daemonYaml) =>
    writeFileSync(
      file,
      `registries:\n  src: { url: "http://127.0.0.1:1" }\n  dst: { url: "http://127.0.0.1:2" }\ntransfer: { stateDir: ${JSON.stringify(join(dir, 'state'))}, retries: 0, gracePeriod: 1 }\ndaemon:\n  ${daemon}\nrules:\n${rules}`,
    );
  write(rulesYaml);
  const lines: Record<string, unknown>[] = [];
  const stream = new PassThrough();
  stream.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
  });
  return { file, write, lines, logger: createLogger('info', stream) };
}

describe('ferry daemon process', () => {
  it('reloads on SIGHUP, keeps the old config when the new one is invalid, exits 143 on SIGTERM', async () => {
    isolateSignals();
    const { file, write, lines, logger } = setup('  - { name: first, source: src, destination: dst }\n');
    const exit = runDaemon({ configFile: file, logger });
    const listening = await eventually(() => lines.find((l) => l.msg === 'ferry daemon listening'));
    const url = listening.url as string;
    const names = async () => (await http(url, 'GET', '/api/rules')).json().rules.map((r: { name: string }) => r.name);
    expect(await names()).toEqual(['first']);

    write('  - { name: first, source: src, destination: dst }\n  - { name: second, source: src, destination: dst, trigger: { schedule: "*/5 * * * *" } }\n');
    process.emit('SIGHUP');
    expect(await names()).toEqual(['first', 'second']);

    write('  - { name: third, source: src, destination: dst, trigger: { schedule: "whenever" } }\n');
    process.emit('SIGHUP');
    expect(lines.find((l) => l.msg === 'config reload rejected; keeping the running config')?.err).toMatch(/rule third: trigger.schedule "whenever"/);
    write('  - { name: fourth, sorce: src }\n');
    process.emit('SIGHUP');
    expect(lines.filter((l) => l.msg === 'config reload rejected; keeping the running config')).toHaveLength(2);
    expect(await names()).toEqual(['first', 'second']);
    expect((await http(url, 'GET', '/metrics')).text).toMatch(/^ferry_config_reloads_total\{result="rejected"\} 2$/m);

    process.emit('SIGTERM');
    expect(await exit).toBe(143);
    await expect(http(url, 'GET', '/healthz')).rejects.toThrow(/ECONNREFUSED/);
    expect(process.listenerCount('SIGHUP')).toBe(0);
  });

  it('exits 2 for a config the daemon cannot use', async () => {
    isolateSignals();
    const { file, logger } = setup('  - { name: first, source: src, destination: dst }\n', 'listen: 0.0.0.0:0');
    expect(await runDaemon({ configFile: file, logger })).toBe(2);
  });
});

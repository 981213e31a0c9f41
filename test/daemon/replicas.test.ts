// Daemon replicas on one PostgreSQL state (state.url), against a real PostgreSQL server
// (test/helpers/postgres.ts): one leader runs the schedules, another takes over when it stops, dies
// (SIGKILL of its process) or loses its connection; execution ids never collide; every replica's
// API lists and shows the executions of all of them; the runs of a replica that died are resumed.
import { type ChildProcess, spawn } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { FerryConfig } from '../../src/config/schema.js';
import { Daemon } from '../../src/daemon/service.js';
import { type Logger, createLogger } from '../../src/log.js';
import { type TestPostgres, postgresAvailable, startPostgres } from '../helpers/postgres.js';
import { FakeClock, eventually, fakeEngines, http, sharedDaemonConfig } from './fakes.js';

const RETRY_MS = 150;
const CHILD = fileURLToPath(new URL('./replica-child.ts', import.meta.url));
const manual = () => ({ type: 'manual' as const, at: new Date().toISOString() });
const full = { full: true, artifacts: [], deletions: [] };

let server: TestPostgres | undefined;
let dbs = 0;
let daemons: Daemon[] = [];
let children: ChildProcess[] = [];

afterEach(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  children = [];
  await Promise.all(daemons.map((d) => d.stop(0)));
  daemons = [];
});
afterAll(async () => {
  await server?.stop();
});

const sharedConfig = sharedDaemonConfig;

async function replica(config: FerryConfig, name: string, clock?: FakeClock, logger?: Logger, retryMs = RETRY_MS) {
  const fakes = fakeEngines();
  const daemon = new Daemon({ config, createEngine: fakes.factory, replica: name, leaderRetryMs: retryMs, clock, logger });
  daemons.push(daemon);
  await daemon.start();
  return { daemon, fakes };
}

async function metric(d: Daemon, name: string): Promise<number> {
  const text = (await http(d.url, 'GET', '/metrics')).text;
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1]);
}

describe.runIf(postgresAvailable())('daemon replicas on one PostgreSQL state', () => {
  beforeAll(async () => {
    server ??= await startPostgres();
  }, 60_000);

  it('exactly one replica fires a schedule; the other takes over when the leader stops', async () => {
    const url = await server!.createDatabase(`replicas${++dbs}`);
    const config = sharedConfig(url, [{ name: 'nightly', trigger: { schedule: '0 * * * *' } }, { name: 'r' }]);
    const [clockA, clockB] = [new FakeClock('2026-01-01T00:30:00Z'), new FakeClock('2026-01-01T00:30:00Z')];
    const a = await replica(config, 'replica-a', clockA);
    const b = await replica(config, 'replica-b', clockB);
    expect([a.daemon.leader, b.daemon.leader]).toEqual([true, false]);
    expect((await http(a.daemon.url, 'GET', '/api/status')).json()).toMatchObject({ leader: true, replica: 'replica-a', sharedState: true });
    expect((await http(b.daemon.url, 'GET', '/api/status')).json()).toMatchObject({ leader: false, replica: 'replica-b', sharedState: true });
    expect(await metric(a.daemon, 'ferry_daemon_leader')).toBe(1);
    expect(await metric(b.daemon, 'ferry_daemon_leader')).toBe(0);
    expect((await http(b.daemon.url, 'GET', '/')).text).toContain('replica replica-b (not the leader: schedules run on another replica)');
    // Only the leader arms schedules.
    expect(a.daemon.scheduler.nextRun('nightly')?.toISOString()).toBe('2026-01-01T01:00:00.000Z');
    expect(b.daemon.scheduler.nextRun('nightly')).toBeUndefined();

    clockA.advance(31 * 60_000);
    clockB.advance(31 * 60_000);
    const fired = await a.fakes.current().nextRun();
    expect(fired.rule).toBe('nightly');
    expect(b.fakes.engines.every((e) => e.runs.length === 0)).toBe(true);
    fired.finish();

    // B keeps trying every RETRY_MS: it leads once A is gone, and then fires the next occurrence.
    await a.daemon.stop(0);
    daemons = daemons.filter((d) => d !== a.daemon);
    await eventually(() => b.daemon.leader, 5000, 'replica b to lead');
    expect(await metric(b.daemon, 'ferry_daemon_leader')).toBe(1);
    clockB.advance(60 * 60_000);
    expect((await b.fakes.current().nextRun()).rule).toBe('nightly');
  });

  it('a leader whose connection breaks steps down at once; exactly one replica leads afterwards', async () => {
    const url = await server!.createDatabase(`replicas${++dbs}`);
    const config = sharedConfig(url, [{ name: 'r' }]);
    // A's log, with the time of each line: it may lead again a moment later, so watch the change itself.
    const lines: { msg: string; at: number }[] = [];
    const stream = new PassThrough();
    stream.on('data', (c: Buffer) => {
      for (const l of c.toString().split('\n')) if (l) lines.push({ msg: (JSON.parse(l) as { msg: string }).msg, at: Date.now() });
    });
    // A checks its connection only every 5 s: stepping down sooner is the connection's error event.
    const a = await replica(config, 'replica-a', undefined, createLogger('info', stream), 5000);
    const b = await replica(config, 'replica-b');
    expect(a.daemon.leader).toBe(true);
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      const cut = Date.now();
      await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'ferry daemon replica-a'`);
      // On the connection's error, not at the next check.
      const down = await eventually(() => lines.find((l) => l.msg.includes('no longer the leader')), 5000, 'replica a to step down');
      expect(down.at - cut).toBeLessThan(1000);
      await eventually(() => b.daemon.leader, 5000, 'replica b to lead');
      // Stable: never two leaders, never none, over a few retry intervals.
      for (let i = 0; i < 10; i++) {
        expect(Number(a.daemon.leader) + Number(b.daemon.leader)).toBe(1);
        await new Promise((r) => setTimeout(r, RETRY_MS / 2));
      }
    } finally {
      await admin.end();
    }
  });

  it('execution ids never collide; each replica lists and shows the executions run by the others', async () => {
    const url = await server!.createDatabase(`replicas${++dbs}`);
    const config = sharedConfig(url, [{ name: 'r' }, { name: 's' }, { name: 't' }]);
    const a = await replica(config, 'replica-a');
    const b = await replica(config, 'replica-b');
    for (const r of [a, b]) r.fakes.current().autoFinish = true;
    // Triggered at the same time on both replicas, over the API as a load balancer would spread them.
    const answers = await Promise.all(
      Array.from({ length: 12 }, (_, i) => http((i % 2 ? b : a).daemon.url, 'POST', `/api/rules/${['r', 's', 't'][i % 3]}/run`)),
    );
    expect(answers.map((x) => x.status).every((s) => s === 202)).toBe(true);
    const ids = answers.map((x) => x.json().execution.id as number);
    await eventually(async () => (await http(a.daemon.url, 'GET', '/api/executions?status=ok')).json().total === new Set(ids).size, 5000, 'every run to finish');
    for (const d of [a.daemon, b.daemon]) await d.history.flush();
    const onA = (await http(a.daemon.url, 'GET', '/api/executions?limit=100')).json();
    const onB = (await http(b.daemon.url, 'GET', '/api/executions?limit=100')).json();
    const listed = onA.executions.map((e: { id: number }) => e.id);
    expect(new Set(listed).size).toBe(listed.length); // unique ids
    expect(onB.executions.map((e: { id: number }) => e.id)).toEqual(listed);
    expect(new Set(onA.executions.map((e: { replica: string }) => e.replica))).toEqual(new Set(['replica-a', 'replica-b']));
    // The detail of an execution run by A, asked of B.
    const ranOnA = onA.executions.find((e: { replica: string }) => e.replica === 'replica-a');
    expect((await http(b.daemon.url, 'GET', `/api/executions/${ranOnA.id}`)).json()).toMatchObject({ id: ranOnA.id, replica: 'replica-a', status: 'ok' });
    expect((await http(b.daemon.url, 'GET', `/api/executions?rule=${ranOnA.rule}`)).json().executions.map((e: { rule: string }) => e.rule)).toEqual(
      expect.arrayContaining([ranOnA.rule]),
    );
    // A run on A, still running, seen from B; B cannot cancel it, A can.
    a.fakes.current().autoFinish = false;
    const running = (await http(a.daemon.url, 'POST', '/api/rules/r/run')).json().execution.id as number;
    await a.fakes.current().nextRun(a.fakes.current().runs.length - 1);
    await eventually(async () => (await http(b.daemon.url, 'GET', `/api/executions/${running}`)).json().status === 'running', 5000, 'the run to show on B');
    expect((await http(b.daemon.url, 'GET', '/api/executions?status=running')).json().executions.map((e: { id: number }) => e.id)).toEqual([running]);
    const refused = await http(b.daemon.url, 'POST', `/api/executions/${running}/cancel`);
    expect(refused.status).toBe(409);
    expect(refused.json().error).toMatch(/runs on replica replica-a/);
    expect((await http(a.daemon.url, 'POST', `/api/executions/${running}/cancel`)).status).toBe(202);
  });

  it('a replica killed with SIGKILL: another takes the leadership over and runs its unfinished run again', async () => {
    const url = await server!.createDatabase(`replicas${++dbs}`);
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, url, 'replica-killed', String(RETRY_MS)], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    const started = await new Promise<{ url: string; leader: boolean }>((resolve, reject) => {
      let out = '';
      let err = '';
      child.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
        const line = out.split('\n').find((l) => l.startsWith('{'));
        if (line) resolve(JSON.parse(line));
      });
      child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
      child.on('exit', (code) => reject(new Error(`replica exited ${code}: ${err}`)));
    });
    expect(started.leader).toBe(true);
    const b = await replica(sharedConfig(url, [{ name: 'r' }]), 'replica-b');
    expect(b.daemon.leader).toBe(false);
    const run = (await http(started.url, 'POST', '/api/rules/r/run')).json().execution;
    await eventually(async () => (await http(b.daemon.url, 'GET', `/api/executions/${run.id}`)).json().status === 'running', 5000, 'the run to start');

    child.kill('SIGKILL');
    await eventually(() => b.daemon.leader, 5000, 'replica b to lead');
    // Two sweeps find the dead replica's alive lock free: its run is marked interrupted and run again here.
    const resumed = await b.fakes.current().nextRun();
    expect(resumed.rule).toBe('r');
    const old = await eventually(async () => {
      const e = (await http(b.daemon.url, 'GET', `/api/executions/${run.id}`)).json();
      return e.status === 'interrupted' && e.resumedBy ? e : undefined;
    }, 5000, 'the dead run to be taken over');
    expect(old.errors.join('\n')).toMatch(/replica replica-killed stopped/);
    const again = (await http(b.daemon.url, 'GET', `/api/executions/${old.resumedBy}`)).json();
    expect(again).toMatchObject({ rule: 'r', replica: 'replica-b', status: 'running', triggers: [{ type: 'resume', of: run.id }] });
    expect(again.id).toBeGreaterThan(run.id);
  });
});

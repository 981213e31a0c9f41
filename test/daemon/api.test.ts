// The HTTP API with a fake engine: access control (loopback without a token, bearer token, refusing a
// public listen without one), every endpoint's answers, bandwidth changes, and config reload.
import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { loadConfig, parseConfig } from '../../src/config/load.js';
import { PreflightError } from '../../src/engine/engine.js';
import { Daemon } from '../../src/daemon/service.js';
import { DaemonConfigError, checkDaemonConfig, parseListen } from '../../src/daemon/settings.js';
import { type FakeEngine, daemonConfig, eventually, fakeEngines, http } from './fakes.js';

const TOKEN = 'test-token-0123456789abcdef';
let daemons: Daemon[] = [];
afterEach(async () => {
  await Promise.all(daemons.map((d) => d.stop(0)));
  daemons = [];
});

async function start(daemonSection: Record<string, unknown> = {}, rules: Array<Record<string, unknown> & { name: string }> = [{ name: 'r' }, { name: 'off', enabled: false }]) {
  const fakes = fakeEngines();
  const daemon = new Daemon({ config: daemonConfig(rules, daemonSection), createEngine: fakes.factory });
  daemons.push(daemon);
  await daemon.start();
  return { daemon, fakes, url: daemon.url };
}

describe('daemon settings', () => {
  it('parses listen addresses and tells loopback from the rest', () => {
    expect(parseListen('127.0.0.1:8480')).toEqual({ host: '127.0.0.1', port: 8480, loopback: true });
    expect(parseListen('[::1]:9000')).toEqual({ host: '::1', port: 9000, loopback: true });
    expect(parseListen('localhost:1')).toMatchObject({ loopback: true });
    expect(parseListen('8480')).toEqual({ host: '127.0.0.1', port: 8480, loopback: true });
    expect(parseListen(':8480')).toEqual({ host: '0.0.0.0', port: 8480, loopback: false });
    expect(parseListen('10.1.2.3:8480')).toMatchObject({ loopback: false });
    expect(() => parseListen('::1:8480')).toThrow(/brackets/);
    expect(() => parseListen('host:99999')).toThrow(/invalid port/);
  });

  it('accepts the example daemon config', () => {
    const env = new Proxy({} as NodeJS.ProcessEnv, { get: (_t, name) => (typeof name === 'string' ? `dummy-${name.toLowerCase()}` : undefined) });
    const config = loadConfig(join(import.meta.dirname, '..', '..', 'config', 'daemon.yaml'), env);
    expect(checkDaemonConfig(config).listen).toEqual({ host: '127.0.0.1', port: 8480, loopback: true });
  });
});

describe('access', () => {
  it('refuses to start on a non-loopback address without a token, with a clear message', () => {
    expect(() => new Daemon({ config: daemonConfig([], { listen: '0.0.0.0:8480' }) })).toThrow(DaemonConfigError);
    expect(() => new Daemon({ config: daemonConfig([], { listen: ':8480' }) })).toThrow(/daemon\.listen is :8480, which is reachable from other machines: set daemon\.token/);
    expect(() => new Daemon({ config: daemonConfig([], { listen: '0.0.0.0:0', token: 'short' }) })).toThrow(/at least 16 characters/);
    expect(() => new Daemon({ config: daemonConfig([], { token: 'CHANGE-ME' }) })).toThrow(/daemon\.token: still the placeholder/);
    expect(() => new Daemon({ config: daemonConfig([], { token: 'change-me-to-a-long-random-token' }) })).toThrow(/daemon\.token: still the placeholder/);
    // webhookAuth has a minimum too, counted after the scheme word Harbor's "Auth Header" may carry.
    expect(() => new Daemon({ config: daemonConfig([], { webhookAuth: 'Bearer abc' }) })).toThrow(/daemon\.webhookAuth: use at least 16 characters after the scheme word/);
    expect(() => new Daemon({ config: daemonConfig([], { webhookAuth: 'short-secret' }) })).toThrow(/daemon\.webhookAuth: use at least 16 characters$/m);
    expect(() => new Daemon({ config: daemonConfig([], { webhookAuth: 'Bearer change-me-webhook-secret' }) })).toThrow(/daemon\.webhookAuth: still the placeholder/);
    expect(() => checkDaemonConfig(daemonConfig([], { webhookAuth: 'Bearer 0123456789abcdef' }))).not.toThrow();
    const ok = new Daemon({ config: daemonConfig([], { listen: '0.0.0.0:0', token: TOKEN }) });
    expect(ok).toBeInstanceOf(Daemon);
    void ok.stop(0);
  });

  it('without a token, answers only requests addressed to loopback and refuses cross-site writes', async () => {
    const { url } = await start();
    expect((await http(url, 'GET', '/api/rules')).status).toBe(200);
    expect((await http(url, 'GET', '/api/rules', { headers: { host: 'localhost' } })).status).toBe(200);
    const rebound = await http(url, 'GET', '/api/rules', { headers: { host: 'attacker.example:8480' } });
    expect(rebound.status).toBe(403);
    expect(rebound.json().error).toMatch(/localhost or 127\.0\.0\.1/);
    const csrf = await http(url, 'POST', '/api/rules/r/run', { headers: { origin: 'http://attacker.example' } });
    expect(csrf.status).toBe(403);
    // Health probes are always open.
    expect((await http(url, 'GET', '/healthz', { headers: { host: 'pod.internal' } })).status).toBe(200);
  });

  it('with a token, requires it (bearer, or basic password for browsers) in constant time', async () => {
    const { url } = await start({ token: TOKEN });
    const none = await http(url, 'GET', '/api/rules');
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toMatch(/Bearer realm="ferry"/);
    expect((await http(url, 'GET', '/api/rules', { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    expect((await http(url, 'GET', '/api/rules', { headers: { authorization: `Bearer ${TOKEN}x` } })).status).toBe(401);
    expect((await http(url, 'GET', '/api/rules', { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
    expect((await http(url, 'GET', '/', { headers: { authorization: `Basic ${Buffer.from(`me:${TOKEN}`).toString('base64')}` } })).status).toBe(200);
    expect((await http(url, 'GET', '/metrics')).status).toBe(401);
    expect((await http(url, 'GET', '/metrics', { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
    expect((await http(url, 'POST', '/api/rules/r/run', { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(202);
    expect((await http(url, 'GET', '/healthz')).status).toBe(200);
    // With a token, a non-loopback Host is fine (a proxy in front, a public listen).
    expect((await http(url, 'GET', '/api/rules', { headers: { host: 'ferry.example.com', authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
  });
});

describe('endpoints', () => {
  it('lists rules, runs one, lists executions and shows one with its artifact log', async () => {
    const { url, fakes } = await start({}, [{ name: 'r', trigger: { schedule: '0 2 * * *', timezone: 'UTC' } }, { name: 'off', enabled: false }, { name: 'hook', trigger: 'event', deleteRemote: true }]);
    const rules = (await http(url, 'GET', '/api/rules')).json().rules;
    expect(rules).toHaveLength(3);
    expect(rules[0]).toMatchObject({ name: 'r', source: 'src', destination: 'dst', enabled: true, trigger: { schedule: '0 2 * * *', timezone: 'UTC' }, state: 'idle' });
    expect(rules[0].nextRun).toMatch(/T02:00:00.000Z$/);
    expect(rules[2]).toMatchObject({ name: 'hook', trigger: 'event', deleteRemote: true });

    const run = await http(url, 'POST', '/api/rules/r/run');
    expect(run.status).toBe(202);
    const id = run.json().execution.id;
    expect(run.json()).toMatchObject({ queued: false, merged: false, execution: { id, rule: 'r', status: 'running', trigger: 'manual' } });
    expect(run.headers.location).toBe(`/api/executions/${id}`);
    const again = await http(url, 'POST', '/api/rules/r/run');
    expect(again.json()).toMatchObject({ queued: true, execution: { status: 'queued' } });
    expect((await http(url, 'GET', '/api/rules')).json().rules[0]).toMatchObject({ state: 'running', running: id, queued: again.json().execution.id });

    const engine = fakes.current();
    (await engine.nextRun(0)).finish({
      status: 'partial',
      artifacts: { planned: 2, copied: 1, present: 0, skipped: 0, failed: 1 },
      blobs: { uploaded: 3, mounted: 1, skipped: 0 },
      bytes: 12345,
      items: [
        { source: 'src/lib/a:1', destination: 'dst/lib/a', status: 'copied', digest: 'sha256:11', tags: ['1'], bytes: 12345 },
        { source: 'src/lib/b:2', destination: 'dst/lib/b', status: 'failed', tags: ['2'], reason: 'MANIFEST_INVALID' },
      ],
    });
    (await engine.nextRun(1)).finish();
    const list = await eventually(async () => {
      const l = (await http(url, 'GET', '/api/executions')).json();
      return l.executions.every((e: { status: string }) => e.status === 'ok' || e.status === 'partial') && l;
    });
    expect(list.total).toBe(2);
    const first = list.executions.find((e: { id: number }) => e.id === id);
    expect(first).toMatchObject({ rule: 'r', status: 'partial', trigger: 'manual', artifacts: { copied: 1, failed: 1 }, blobs: { uploaded: 3, mounted: 1 }, bytes: 12345, errorCount: 1 });
    expect(first.errors).toEqual(['src/lib/b:2 -> dst/lib/b: MANIFEST_INVALID']);
    expect(first.durationMs).toBeGreaterThanOrEqual(0);
    expect(first.items).toBeUndefined();
    expect((await http(url, 'GET', '/api/executions?status=partial')).json().total).toBe(1);
    expect((await http(url, 'GET', '/api/executions?rule=hook')).json().total).toBe(0);
    expect((await http(url, 'GET', '/api/executions?limit=1')).json().executions).toHaveLength(1);
    expect((await http(url, 'GET', '/api/executions?status=bogus')).status).toBe(400);

    const one = await http(url, 'GET', `/api/executions/${id}`);
    expect(one.status).toBe(200);
    expect(one.json().items.map((i: { status: string }) => i.status)).toEqual(['copied', 'failed']);
    expect((await http(url, 'GET', '/api/executions/424242')).status).toBe(404);
    expect((await http(url, 'GET', '/api/executions/abc')).status).toBe(404);
  });

  it('refuses unknown and disabled rules, unknown endpoints and methods', async () => {
    const { url } = await start();
    expect((await http(url, 'POST', '/api/rules/nope/run')).status).toBe(404);
    const disabled = await http(url, 'POST', '/api/rules/off/run');
    expect(disabled.status).toBe(409);
    expect(disabled.json().error).toMatch(/disabled/);
    expect((await http(url, 'GET', '/api/nothing')).status).toBe(404);
    const wrong = await http(url, 'DELETE', '/api/rules');
    expect(wrong.status).toBe(405);
    expect(wrong.headers.allow).toBe('GET');
  });

  it('cancels a running execution', async () => {
    const { url, fakes } = await start();
    const id = (await http(url, 'POST', '/api/rules/r/run')).json().execution.id;
    const run = await fakes.current().nextRun(0);
    const cancel = await http(url, 'POST', `/api/executions/${id}/cancel`);
    expect(cancel.status).toBe(202);
    expect(run.opts.signal?.aborted).toBe(true);
    await eventually(async () => (await http(url, 'GET', `/api/executions/${id}`)).json().status === 'cancelled');
    expect((await http(url, 'POST', `/api/executions/${id}/cancel`)).status).toBe(409);
    expect((await http(url, 'POST', '/api/executions/999/cancel')).status).toBe(404);
  });

  it('alone on its state (SQLite), the daemon is the leader: it says so in /api/status and ferry_daemon_leader, and arms its schedules', async () => {
    const { daemon, url } = await start({}, [{ name: 'r', trigger: { schedule: '0 * * * *' } }]);
    expect((await http(url, 'GET', '/api/status')).json()).toMatchObject({ leader: true, sharedState: false, replica: daemon.leadership.replica });
    expect((await daemon.metrics.render()).body).toMatch(/^ferry_daemon_leader 1$/m);
    expect(daemon.scheduler.nextRun('r')).toBeDefined();
    const executions = (await http(url, 'GET', '/api/executions')).json();
    expect(executions).toEqual({ total: 0, executions: [] });
    await daemon.stop(0);
    expect((await daemon.metrics.render()).body).toMatch(/^ferry_daemon_leader 0$/m);
  });

  it('changes the bandwidth cap at run time', async () => {
    const { url, fakes, daemon } = await start();
    expect((await http(url, 'GET', '/api/bandwidth')).json()).toEqual({ bandwidth: 0, display: 'unlimited' });
    const put = await http(url, 'PUT', '/api/bandwidth', { body: { bandwidth: '100Mbps' } });
    expect(put.status).toBe(200);
    expect(put.json()).toEqual({ bandwidth: 12_500_000, display: '100 Mbps (11.9 MiB/s)' });
    expect(fakes.current().bandwidths).toEqual([12_500_000]);
    expect((await daemon.metrics.render()).body).toMatch(/^ferry_bandwidth_limit_bytes_per_second 12500000$/m);
    expect((await http(url, 'PUT', '/api/bandwidth', { body: { bandwidth: 'fast' } })).status).toBe(400);
    expect((await http(url, 'PUT', '/api/bandwidth', { body: '{not json' })).status).toBe(400);
    expect((await http(url, 'PUT', '/api/bandwidth', { body: { bandwidth: 0 } })).json().display).toBe('unlimited');
  });

  it('reports readiness from the registries the rules use', async () => {
    const { url, fakes } = await start();
    const ready = await http(url, 'GET', '/readyz');
    expect(ready.status).toBe(200);
    expect(ready.json()).toMatchObject({ ready: true, registries: { src: 'ok', dst: 'ok' } });
    expect(fakes.current()).toBeDefined();
  });

  it('exports every rule\'s series from 0 and restores last_success from the history after a restart', async () => {
    const { daemon, fakes } = await start({}, [{ name: 'r' }, { name: 'never' }]);
    const first = (await daemon.metrics.render()).body;
    for (const rule of ['r', 'never']) {
      for (const status of ['ok', 'partial', 'failed', 'cancelled', 'interrupted']) {
        expect(first).toMatch(new RegExp(`^ferry_runs_total\\{rule="${rule}",status="${status}"\\} 0$`, 'm'));
        expect(first).toMatch(new RegExp(`^ferry_run_duration_seconds_count\\{rule="${rule}",status="${status}"\\} 0$`, 'm'));
      }
      expect(first).toMatch(new RegExp(`^ferry_last_success_timestamp_seconds\\{rule="${rule}"\\} 0$`, 'm'));
      expect(first).toMatch(new RegExp(`^ferry_remote_deletions_total\\{rule="${rule}",status="deleted"\\} 0$`, 'm'));
    }
    daemon.trigger('r', { type: 'manual', at: new Date().toISOString() }, { full: true, artifacts: [], deletions: [] });
    (await fakes.current().nextRun(0)).finish();
    await eventually(() => daemon.runner.running === 0);
    const ok = daemon.history.list().find((e) => e.rule === 'r')!;
    expect(ok.status).toBe('ok');
    const stamp = Math.floor(Date.parse(ok.finishedAt!) / 1000);
    expect((await daemon.metrics.render()).body).toMatch(new RegExp(`^ferry_last_success_timestamp_seconds\\{rule="r"\\} ${stamp}$`, 'm'));
    await daemon.stop(0);

    // A new process on the same state directory: the gauge comes back from the history, not 0.
    const again = new Daemon({ config: daemon.config(), createEngine: fakeEngines().factory });
    daemons.push(again);
    await again.start();
    const text = (await again.metrics.render()).body;
    expect(text).toMatch(new RegExp(`^ferry_last_success_timestamp_seconds\\{rule="r"\\} ${stamp}$`, 'm'));
    expect(text).toMatch(/^ferry_last_success_timestamp_seconds\{rule="never"\} 0$/m);
    expect(text).toMatch(/^ferry_runs_total\{rule="r",status="ok"\} 0$/m);
  });

  it('tells an unauthenticated /readyz only ready or not, never the registry errors', async () => {
    const { url, fakes, daemon } = await start({ token: TOKEN });
    const secretError = 'dial tcp 10.20.30.40:443 (harbor.internal.corp): certificate signed by unknown authority';
    fakes.current().preflight = (async () => {
      throw new PreflightError([{ registry: 'src', message: secretError }]);
    }) as unknown as FakeEngine['preflight'];
    daemon.readiness.invalidate();
    const anonymous = await http(url, 'GET', '/readyz', { headers: { host: 'pod.internal' } });
    expect(anonymous.status).toBe(503);
    expect(anonymous.json()).toEqual({ ready: false, checkedAt: expect.any(String) });
    expect(anonymous.text).not.toContain('harbor.internal');
    const wrong = await http(url, 'GET', '/readyz', { headers: { authorization: 'Bearer wrong-token-0123456789' } });
    expect(wrong.text).not.toContain('harbor.internal');
    const authorized = await http(url, 'GET', '/readyz', { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(authorized.status).toBe(503);
    expect(authorized.json()).toMatchObject({ ready: false, registries: { src: secretError, dst: 'ok' } });
  });

  it('reloads the config, rejecting one it cannot use and keeping the old one', async () => {
    const { daemon, url, fakes } = await start();
    const base = daemon.config();
    const bad = parseConfig({ ...base, daemon: { listen: '127.0.0.1:0' }, rules: [{ name: 'r', source: 'src', destination: 'dst', trigger: { schedule: 'every day' } }] });
    const rejected = daemon.reload(bad);
    expect(rejected.ok).toBe(false);
    expect(!rejected.ok && rejected.error).toMatch(/rule r: trigger.schedule "every day"/);
    expect((await http(url, 'GET', '/api/rules')).json().rules.map((r: { name: string }) => r.name)).toEqual(['r', 'off']);

    const good = parseConfig({ ...base, daemon: { listen: '127.0.0.1:0' }, rules: [{ name: 'r', source: 'src', destination: 'dst' }, { name: 'new', source: 'src', destination: 'dst' }] });
    expect(daemon.reload(good)).toEqual({ ok: true });
    expect((await http(url, 'GET', '/api/rules')).json().rules.map((r: { name: string }) => r.name)).toEqual(['r', 'new']);
    // The old engine had no runs: closed at once; the new one is current.
    expect(fakes.engines).toHaveLength(2);
    expect(fakes.engines[0]!.closed).toBe(true);
    expect((await http(url, 'POST', '/api/rules/new/run')).status).toBe(202);
    expect((await fakes.engines[1]!.nextRun(0)).rule).toBe('new');
    expect((await daemon.metrics.render()).body).toMatch(/ferry_config_reloads_total\{result="rejected"\} 1/);
  });
});

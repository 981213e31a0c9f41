// One run per rule at a time; triggers during a run queue exactly one follow-up (merging); cancel;
// shutdown marks unfinished runs interrupted; a new daemon on the same state dir runs them again.
import { afterEach, describe, expect, it } from 'vitest';
import { mergeRequests } from '../../src/daemon/runner.js';
import { Daemon } from '../../src/daemon/service.js';
import { FakeClock, daemonConfig, eventually, fakeEngines, tempStateDir } from './fakes.js';

const manual = () => ({ type: 'manual' as const, at: new Date().toISOString() });
const full = { full: true, artifacts: [], deletions: [] };

let daemons: Daemon[] = [];
afterEach(async () => {
  await Promise.all(daemons.map((d) => d.stop(0)));
  daemons = [];
});

async function start(rules: Array<Record<string, unknown> & { name: string }> = [{ name: 'r' }, { name: 'other' }], stateDir = tempStateDir()) {
  const fakes = fakeEngines();
  const daemon = new Daemon({ config: daemonConfig(rules, {}, stateDir), createEngine: fakes.factory, clock: new FakeClock('2024-01-01T00:00:00Z') });
  daemons.push(daemon);
  await daemon.start();
  return { daemon, fakes, stateDir };
}

describe('runner', () => {
  it('never runs a rule twice at once: triggers during a run queue exactly one follow-up', async () => {
    const { daemon, fakes } = await start();
    const engine = fakes.current();
    const first = daemon.trigger('r', manual(), full);
    expect(first).toMatchObject({ queued: false, merged: false });
    expect(first.execution.status).toBe('running');
    const second = daemon.trigger('r', manual(), full);
    const third = daemon.trigger('r', { type: 'schedule', at: new Date().toISOString(), schedule: '* * * * *' }, full);
    const fourth = daemon.trigger('r', manual(), full);
    expect(second).toMatchObject({ queued: true, merged: false });
    expect(third).toMatchObject({ queued: true, merged: true });
    expect(fourth.execution.id).toBe(second.execution.id);
    expect(second.execution.triggers.map((t) => t.type)).toEqual(['manual', 'schedule', 'manual']);
    // Another rule is not held up.
    const other = daemon.trigger('other', manual(), full);
    expect(other.queued).toBe(false);
    await engine.nextRun(1);
    expect(engine.runs.map((r) => r.rule)).toEqual(['r', 'other']);

    engine.runs[0]!.finish();
    const followUp = await engine.nextRun(2);
    expect(followUp.rule).toBe('r');
    expect(daemon.history.peek(second.execution.id)?.status).toBe('running');
    // While the follow-up runs, a new trigger queues a new (single) follow-up again.
    const fifth = daemon.trigger('r', manual(), full);
    expect(fifth).toMatchObject({ queued: true, merged: false });
    followUp.finish();
    (await engine.nextRun(3)).finish();
    engine.runs[1]!.finish();
    await eventually(() => daemon.runner.running === 0);
    expect(engine.runs.filter((r) => r.rule === 'r')).toHaveLength(3);
    expect(daemon.history.list().map((e) => [e.id, e.rule, e.status])).toEqual([
      [fifth.execution.id, 'r', 'ok'],
      [other.execution.id, 'other', 'ok'],
      [second.execution.id, 'r', 'ok'],
      [first.execution.id, 'r', 'ok'],
    ]);
  });

  it('merges webhook artifacts into the queued follow-up; a full run absorbs them', async () => {
    const { daemon, fakes } = await start();
    const engine = fakes.current();
    daemon.trigger('r', manual(), full);
    const ev = (repository: string, tag: string) => ({ type: 'event' as const, at: new Date().toISOString(), event: 'PUSH_ARTIFACT', repository });
    const a = daemon.trigger('r', ev('lib/a', '1'), { full: false, artifacts: [{ repository: 'lib/a', tags: ['1'] }], deletions: [] });
    daemon.trigger('r', ev('lib/b', '2'), { full: false, artifacts: [{ repository: 'lib/b', tags: ['2'] }], deletions: [] });
    daemon.trigger('r', ev('lib/a', '1'), { full: false, artifacts: [{ repository: 'lib/a', tags: ['1'] }], deletions: [] });
    expect(a.execution.request).toEqual({ full: false, artifacts: [{ repository: 'lib/a', tags: ['1'] }, { repository: 'lib/b', tags: ['2'] }], deletions: [] });
    engine.runs[0]!.finish();
    const followUp = await engine.nextRun(1);
    expect(followUp.artifacts).toEqual([{ repository: 'lib/a', tags: ['1'] }, { repository: 'lib/b', tags: ['2'] }]);
    followUp.finish();
    await eventually(() => daemon.runner.running === 0);

    expect(mergeRequests({ full: false, artifacts: [{ repository: 'x', tags: ['1'] }], deletions: [] }, full)).toEqual(full);
    // The later event wins for one artifact: pushed after deleted → copied, deleted after pushed → deleted.
    expect(mergeRequests({ full: false, artifacts: [], deletions: [{ repository: 'x', tag: '1', digest: 'sha256:aa' }] }, { full: false, artifacts: [{ repository: 'x', tags: ['1'], digest: 'sha256:bb' }], deletions: [] })).toEqual({
      full: false,
      artifacts: [{ repository: 'x', tags: ['1'], digest: 'sha256:bb' }],
      deletions: [],
    });
    expect(mergeRequests({ full: false, artifacts: [{ repository: 'x', tags: ['1'], digest: 'sha256:bb' }], deletions: [] }, { full: false, artifacts: [], deletions: [{ repository: 'x', tag: '1', digest: 'sha256:bb' }] })).toEqual({
      full: false,
      artifacts: [],
      deletions: [{ repository: 'x', tag: '1', digest: 'sha256:bb' }],
    });
  });

  it('cancels a running run through its abort signal, and a queued one before it starts', async () => {
    const { daemon, fakes } = await start();
    const engine = fakes.current();
    const running = daemon.trigger('r', manual(), full).execution;
    const queued = daemon.trigger('r', manual(), full).execution;
    const run = await engine.nextRun(0);
    expect(daemon.runner.cancel(queued.id)).toBe('cancelled');
    expect(daemon.history.peek(queued.id)?.status).toBe('cancelled');
    expect(daemon.runner.cancel(running.id)).toBe('cancelling');
    expect(run.opts.signal?.aborted).toBe(true);
    await eventually(() => daemon.history.peek(running.id)?.status === 'cancelled');
    expect(daemon.runner.cancel(running.id)).toBe('finished');
    expect(daemon.runner.cancel(999)).toBe('unknown');
    // The cancelled follow-up never ran.
    await new Promise((r) => setTimeout(r, 50));
    expect(engine.runs).toHaveLength(1);
  });

  it('stops gracefully: no new work at once, copies in flight aborted after the grace period', async () => {
    const { daemon, fakes } = await start();
    const exec = daemon.trigger('r', manual(), full).execution;
    const run = await fakes.current().nextRun(0);
    const started = Date.now();
    const stopping = daemon.stop(300);
    expect(run.opts.stop?.aborted).toBe(true);
    expect(run.opts.signal?.aborted).toBe(false);
    expect(() => daemon.trigger('other', manual(), full)).toThrow(/shutting down/);
    await stopping;
    daemons = [];
    expect(run.opts.signal?.aborted).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(daemon.history.peek(exec.id)?.status).toBe('interrupted');
  });

  it('marks runs interrupted on shutdown and after a crash, and runs them again at the next start', async () => {
    const stateDir = tempStateDir();
    const first = await start([{ name: 'r' }, { name: 'hooked', trigger: 'event' }], stateDir);
    const running = first.daemon.trigger('r', manual(), full).execution;
    const queued = first.daemon.trigger('r', manual(), full).execution;
    const event = first.daemon.trigger('hooked', { type: 'event', at: new Date().toISOString(), event: 'PUSH_ARTIFACT' }, { full: false, artifacts: [{ repository: 'lib/a', tags: ['1'] }], deletions: [] }).execution;
    await first.fakes.current().nextRun(1);
    await first.daemon.stop(20); // grace period over: runs are aborted
    daemons = [];
    for (const id of [running.id, queued.id, event.id]) expect(first.daemon.history.peek(id)?.status).toBe('interrupted');
    expect(first.fakes.current().closed).toBe(true);

    const second = await start([{ name: 'r' }, { name: 'hooked', trigger: 'event' }], stateDir);
    const engine = second.fakes.current();
    await engine.nextRun(1);
    // r: the interrupted run starts again, the interrupted follow-up queues behind it; hooked: only its artifact.
    const byRule = Object.fromEntries(engine.runs.map((r) => [r.rule, r]));
    expect(byRule.hooked!.artifacts).toEqual([{ repository: 'lib/a', tags: ['1'] }]);
    expect(byRule.r!.artifacts).toBeUndefined();
    const resumed = second.daemon.history.list().filter((e) => e.triggers[0]?.type === 'resume');
    const resumedOf = Object.fromEntries(resumed.map((e) => [e.rule, e.triggers.map((t) => (t.type === 'resume' ? t.of : 0))]));
    // One run per rule picks up everything it had unfinished.
    expect(resumedOf).toEqual({ r: [running.id, queued.id], hooked: [event.id] });
    expect(engine.runs).toHaveLength(2);
    expect(second.daemon.history.peek(running.id)?.resumedBy).toBe(resumed.find((e) => e.rule === 'r')!.id);
    for (const r of engine.runs) r.finish();
    await eventually(() => second.daemon.runner.running === 0);

    // A crash (no stop): the third daemon finds a "running" execution and resumes it once.
    const crashed = second.daemon.trigger('r', manual(), full).execution;
    await engine.nextRun(2);
    await second.daemon.history.flush();
    const third = await start([{ name: 'r' }, { name: 'hooked', trigger: 'event' }], stateDir);
    expect(third.daemon.history.peek(crashed.id)?.status).toBe('interrupted');
    const again = await third.fakes.current().nextRun(0);
    expect(third.daemon.history.list()[0]!.triggers).toEqual([expect.objectContaining({ type: 'resume', of: crashed.id })]);
    expect(again.rule).toBe('r');
    again.finish();
    await eventually(() => third.daemon.runner.running === 0);
    engine.runs[2]!.finish();
  });
});

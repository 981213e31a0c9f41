// One run per rule at a time; triggers during a run queue exactly one follow-up (merging); cancel;
// shutdown marks unfinished runs interrupted; a new daemon on the same state dir runs them again.
import { afterEach, describe, expect, it } from 'vitest';
import type { RunRequest } from '../../src/daemon/execution.js';
import { MAX_EVENT_WORK, MAX_TRIGGERS, mergeRequests } from '../../src/daemon/runner.js';
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
    const first = await daemon.trigger('r', manual(), full);
    expect(first).toMatchObject({ queued: false, merged: false });
    expect(first.execution.status).toBe('running');
    const second = await daemon.trigger('r', manual(), full);
    const third = await daemon.trigger('r', { type: 'schedule', at: new Date().toISOString(), schedule: '* * * * *' }, full);
    const fourth = await daemon.trigger('r', manual(), full);
    expect(second).toMatchObject({ queued: true, merged: false });
    expect(third).toMatchObject({ queued: true, merged: true });
    expect(fourth.execution.id).toBe(second.execution.id);
    expect(second.execution.triggers.map((t) => t.type)).toEqual(['manual', 'schedule', 'manual']);
    // Another rule is not held up.
    const other = await daemon.trigger('other', manual(), full);
    expect(other.queued).toBe(false);
    await engine.nextRun(1);
    expect(engine.runs.map((r) => r.rule)).toEqual(['r', 'other']);

    engine.runs[0]!.finish();
    const followUp = await engine.nextRun(2);
    expect(followUp.rule).toBe('r');
    expect(daemon.history.peek(second.execution.id)?.status).toBe('running');
    // While the follow-up runs, a new trigger queues a new (single) follow-up again.
    const fifth = await daemon.trigger('r', manual(), full);
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
    const a = await daemon.trigger('r', ev('lib/a', '1'), { full: false, artifacts: [{ repository: 'lib/a', tags: ['1'] }], deletions: [] });
    daemon.trigger('r', ev('lib/b', '2'), { full: false, artifacts: [{ repository: 'lib/b', tags: ['2'] }], deletions: [] });
    daemon.trigger('r', ev('lib/a', '1'), { full: false, artifacts: [{ repository: 'lib/a', tags: ['1'] }], deletions: [] });
    expect(a.execution.request).toEqual({ full: false, artifacts: [{ repository: 'lib/b', tags: ['2'] }, { repository: 'lib/a', tags: ['1'] }], deletions: [] });
    engine.runs[0]!.finish();
    const followUp = await engine.nextRun(1);
    expect(followUp.artifacts).toEqual([{ repository: 'lib/b', tags: ['2'] }, { repository: 'lib/a', tags: ['1'] }]);
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

  it('a later push of a tag supersedes earlier ones: one run never copies two digests to one tag', () => {
    const push = (tags: string[], digest?: string): RunRequest => ({ full: false, artifacts: [{ repository: 'x', tags, ...(digest ? { digest } : {}) }], deletions: [] });
    const D1 = `sha256:${'1'.repeat(64)}`;
    const D2 = `sha256:${'2'.repeat(64)}`;
    expect(mergeRequests(push(['1'], D1), push(['1'], D2)).artifacts).toEqual([{ repository: 'x', tags: ['1'], digest: D2 }]);
    // The earlier artifact keeps the tags nobody pushed again.
    expect(mergeRequests(push(['1', 'latest'], D1), push(['latest'], D2)).artifacts).toEqual([
      { repository: 'x', tags: ['1'], digest: D1 },
      { repository: 'x', tags: ['latest'], digest: D2 },
    ]);
    // The same digest pushed under another tag: one artifact with both tags.
    expect(mergeRequests(push(['1'], D1), push(['2'], D1)).artifacts).toEqual([{ repository: 'x', tags: ['1', '2'], digest: D1 }]);
    // An untagged push (digest only) is not superseded by a tag push of another digest.
    expect(mergeRequests(push([], D1), push(['1'], D2)).artifacts).toHaveLength(2);
    // Pushed, re-pushed, pushed back: the last event wins.
    const three = [push(['1'], D1), push(['1'], D2), push(['1'], D1)].reduce((acc, r) => mergeRequests(acc, r));
    expect(three.artifacts).toEqual([{ repository: 'x', tags: ['1'], digest: D1 }]);
  });

  it('checks at copy time that the source tag still points at the event digest, skipping with a reason if not', async () => {
    const { daemon, fakes } = await start([{ name: 'hooked', trigger: 'event' }]);
    const engine = fakes.current();
    const D1 = `sha256:${'1'.repeat(64)}`;
    const D2 = `sha256:${'2'.repeat(64)}`;
    const D3 = `sha256:${'3'.repeat(64)}`;
    // The source now: app:1 was pushed again (D2), app:stable still D1, app:old deleted.
    const atSource: Record<string, string> = { 'lib/app:1': D2, 'lib/app:stable': D1 };
    engine.provider = (() => ({ client: { headManifest: async (repo: string, ref: string) => (atSource[`${repo}:${ref}`] ? { digest: atSource[`${repo}:${ref}`] } : undefined) } })) as unknown as typeof engine.provider;
    const ev = { type: 'event' as const, at: new Date().toISOString(), event: 'PUSH_ARTIFACT', repository: 'lib/app' };
    const exec = (await daemon.trigger('hooked', ev, { full: false, artifacts: [{ repository: 'lib/app', digest: D1, tags: ['1', 'stable'] }, { repository: 'lib/app', digest: D3, tags: ['old'] }], deletions: [] })).execution;
    const run = await engine.nextRun(0);
    // The engine gets only the tag that still points at the event's digest.
    expect(run.artifacts).toEqual([{ repository: 'lib/app', digest: D1, tags: ['stable'] }]);
    run.finish({ artifacts: { planned: 1, copied: 1, present: 0, skipped: 0, failed: 0 } });
    await eventually(() => daemon.runner.running === 0);
    const done = (await daemon.history.get(exec.id))!;
    expect(done.status).toBe('ok');
    expect(done.artifacts).toMatchObject({ planned: 2, copied: 1, skipped: 1 });
    expect(done.items).toEqual([expect.objectContaining({ status: 'skipped', digest: D3, tags: ['old'], reason: expect.stringMatching(/no longer points at the event's digest: old \(gone\)/) })]);
  });

  it('keeps a bounded sample of artifact results while a run goes on: failures first up to a cap, a count of the rest', async () => {
    const { daemon, fakes } = await start();
    const engine = fakes.current();
    const exec = (await daemon.trigger('r', manual(), full)).execution;
    const run = await engine.nextRun(0);
    const result = (i: number, status: 'failed' | 'copied') => ({ source: `s/app${i}:1`, destination: `d/app${i}:1`, status, tags: ['1'], bytes: 0 });
    for (let i = 0; i < 1500; i++) engine.events.emit('artifact', result(i, 'failed'), 'r');
    for (let i = 0; i < 500; i++) engine.events.emit('artifact', result(i, 'copied'), 'r');
    const live = daemon.runner.current(exec.id)!;
    expect(live.artifacts).toMatchObject({ failed: 1500, copied: 500 });
    expect(live.items.filter((i) => i.status === 'failed')).toHaveLength(1000);
    expect(live.items.filter((i) => i.status === 'copied')).toHaveLength(200);
    expect(live.itemsOmitted).toEqual({ failed: 500, other: 300 });
    // The finished execution holds the report's own sample and the artifact log's path.
    run.finish({ status: 'partial', items: [result(1, 'failed')], itemsOmitted: { failed: 1499, other: 500 }, artifactLog: '/state/runs/r.jsonl' });
    await eventually(() => daemon.runner.running === 0);
    expect(await daemon.history.get(exec.id)).toMatchObject({ items: [result(1, 'failed')], itemsOmitted: { failed: 1499, other: 500 }, artifactLog: '/state/runs/r.jsonl' });
  });

  it('caps and debounces webhook bursts: bounded triggers, bounded work, few history writes', async () => {
    const { daemon, fakes } = await start([{ name: 'hooked', trigger: 'event' }]);
    const engine = fakes.current();
    const ev = (i: number) => ({ type: 'event' as const, at: new Date().toISOString(), event: 'PUSH_ARTIFACT', repository: `lib/a${i}` });
    const push = (i: number) => ({ full: false, artifacts: [{ repository: `lib/a${i}`, tags: ['1'] }], deletions: [] });
    daemon.trigger('hooked', ev(0), push(0));
    await engine.nextRun(0);
    const saves = new Map<number, number>();
    const save = daemon.history.save.bind(daemon.history);
    daemon.history.save = (e) => {
      saves.set(e.id, (saves.get(e.id) ?? 0) + 1);
      save(e);
    };
    const first = (await daemon.trigger('hooked', ev(1), push(1))).execution;
    for (let i = 2; i <= 300; i++) daemon.trigger('hooked', ev(i), push(i));
    expect(first.triggers).toHaveLength(MAX_TRIGGERS);
    expect(first.triggers[0]).toMatchObject({ repository: 'lib/a1' });
    expect(first.triggers.at(-1)).toMatchObject({ repository: 'lib/a300' });
    expect(first.droppedTriggers).toBe(300 - MAX_TRIGGERS);
    expect(first.request.artifacts).toHaveLength(300);
    // Queued once, then one debounced write however many triggers merged in.
    expect(saves.get(first.id)).toBe(1);
    await eventually(() => saves.get(first.id) === 2, 3000, 'the debounced write');
    await daemon.history.flush();
    expect((await daemon.history.get(first.id))?.triggers).toHaveLength(MAX_TRIGGERS);

    // More webhook work than a follow-up holds: it becomes one full run of the rule.
    for (let i = 301; i <= MAX_EVENT_WORK + 1; i++) daemon.trigger('hooked', ev(i), push(i));
    expect(first.request).toEqual({ full: true, artifacts: [], deletions: [] });
    expect(first.errors).toEqual([expect.stringMatching(/more than 5000 webhook artifacts and deletions queued: ran the whole rule instead/)]);
    engine.runs[0]!.finish();
    const followUp = await engine.nextRun(1);
    expect(followUp.artifacts).toBeUndefined();
    followUp.finish();
    await eventually(() => daemon.runner.running === 0);
  });

  it('gives runs fresh caches: the engine drops them whenever no run is using it', async () => {
    const { daemon, fakes } = await start();
    const engine = fakes.current();
    const tokenClears: string[] = [];
    engine.provider = ((name: string) => ({ client: { clearTokens: () => tokenClears.push(name) } })) as unknown as typeof engine.provider;
    daemon.trigger('r', manual(), full);
    daemon.trigger('other', manual(), full);
    await engine.nextRun(1);
    engine.runs[0]!.finish();
    await eventually(() => daemon.runner.running === 1);
    // Overlapping runs share them (a blob one copied is not sent again by the other).
    expect(engine.cacheResets).toBe(0);
    expect(tokenClears).toEqual([]);
    engine.runs[1]!.finish();
    await eventually(() => daemon.runner.running === 0);
    expect(engine.cacheResets).toBe(1);
    // And every registry client the rules use drops its tokens.
    expect(tokenClears.sort()).toEqual(['dst', 'src']);
    daemon.trigger('r', manual(), full);
    (await engine.nextRun(2)).finish();
    await eventually(() => engine.cacheResets === 2);
  });

  it('cancels a running run through its abort signal, and a queued one before it starts', async () => {
    const { daemon, fakes } = await start();
    const engine = fakes.current();
    const running = (await daemon.trigger('r', manual(), full)).execution;
    const queued = (await daemon.trigger('r', manual(), full)).execution;
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
    const exec = (await daemon.trigger('r', manual(), full)).execution;
    const run = await fakes.current().nextRun(0);
    const started = Date.now();
    const stopping = daemon.stop(300);
    expect(run.opts.stop?.aborted).toBe(true);
    expect(run.opts.signal?.aborted).toBe(false);
    await expect(daemon.trigger('other', manual(), full)).rejects.toThrow(/shutting down/);
    await stopping;
    daemons = [];
    expect(run.opts.signal?.aborted).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(daemon.history.peek(exec.id)?.status).toBe('interrupted');
  });

  it('marks runs interrupted on shutdown and after a crash, and runs them again at the next start', async () => {
    const stateDir = tempStateDir();
    const first = await start([{ name: 'r' }, { name: 'hooked', trigger: 'event' }], stateDir);
    const running = (await first.daemon.trigger('r', manual(), full)).execution;
    const queued = (await first.daemon.trigger('r', manual(), full)).execution;
    const event = (await first.daemon.trigger('hooked', { type: 'event', at: new Date().toISOString(), event: 'PUSH_ARTIFACT' }, { full: false, artifacts: [{ repository: 'lib/a', tags: ['1'] }], deletions: [] })).execution;
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
    const crashed = (await second.daemon.trigger('r', manual(), full)).execution;
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

// Cron schedules driven by a fake clock: 5-field and 6-field (seconds) patterns, time zones, long
// waits (timers are capped and re-armed), reload, and the daemon starting runs when a schedule fires.
import { afterEach, describe, expect, it } from 'vitest';
import { Daemon } from '../../src/daemon/service.js';
import { Scheduler, validateSchedules } from '../../src/daemon/scheduler.js';
import { silentLogger } from '../../src/log.js';
import { FakeClock, daemonConfig, eventually, fakeEngines } from './fakes.js';

function recorder(clock: FakeClock) {
  const fired: { rule: string; at: string; now: string }[] = [];
  const scheduler = new Scheduler((rule, info) => fired.push({ rule, at: info.at.toISOString(), now: new Date(clock.now()).toISOString() }), silentLogger, clock);
  return { fired, scheduler };
}

describe('scheduler', () => {
  it('fires a 5-field schedule at each matching minute, never early and never twice', () => {
    const clock = new FakeClock('2024-03-01T10:00:30Z');
    const { fired, scheduler } = recorder(clock);
    scheduler.update([{ rule: 'r', pattern: '*/5 * * * *', timezone: 'UTC' }]);
    expect(scheduler.nextRun('r')?.toISOString()).toBe('2024-03-01T10:05:00.000Z');
    clock.advance(4 * 60_000 + 29_000); // 10:04:59
    expect(fired).toEqual([]);
    clock.advance(1000); // 10:05:00
    expect(fired).toEqual([{ rule: 'r', at: '2024-03-01T10:05:00.000Z', now: '2024-03-01T10:05:00.000Z' }]);
    clock.advance(10 * 60_000); // 10:15:00
    expect(fired.map((f) => f.at)).toEqual(['2024-03-01T10:05:00.000Z', '2024-03-01T10:10:00.000Z', '2024-03-01T10:15:00.000Z']);
    scheduler.stop();
    clock.advance(60 * 60_000);
    expect(fired).toHaveLength(3);
    expect(clock.pending).toBe(0);
  });

  it('supports a leading seconds field', () => {
    const clock = new FakeClock('2024-03-01T10:00:01Z');
    const { fired, scheduler } = recorder(clock);
    scheduler.update([{ rule: 'fast', pattern: '*/20 * * * * *', timezone: 'UTC' }]);
    clock.advance(60_000);
    expect(fired.map((f) => f.at)).toEqual(['2024-03-01T10:00:20.000Z', '2024-03-01T10:00:40.000Z', '2024-03-01T10:01:00.000Z']);
    scheduler.stop();
  });

  it('reads the pattern in the configured time zone', () => {
    const clock = new FakeClock('2024-03-01T00:00:00Z');
    const { fired, scheduler } = recorder(clock);
    // 02:00 in Shanghai (UTC+8) is 18:00 UTC the day before; the first one after the start is on 03-01.
    scheduler.update([{ rule: 'nightly', pattern: '0 2 * * *', timezone: 'Asia/Shanghai' }]);
    expect(scheduler.nextRun('nightly')?.toISOString()).toBe('2024-03-01T18:00:00.000Z');
    clock.advance(3 * 24 * 3600_000); // three days: timers are capped at an hour and re-armed
    expect(fired.map((f) => f.at)).toEqual(['2024-03-01T18:00:00.000Z', '2024-03-02T18:00:00.000Z', '2024-03-03T18:00:00.000Z']);
    expect(fired.every((f) => f.at === f.now)).toBe(true);
    scheduler.stop();
  });

  it('replaces every schedule on update (reload)', () => {
    const clock = new FakeClock('2024-03-01T10:00:00Z');
    const { fired, scheduler } = recorder(clock);
    scheduler.update([{ rule: 'a', pattern: '* * * * *', timezone: 'UTC' }]);
    clock.advance(60_000);
    scheduler.update([{ rule: 'b', pattern: '* * * * *', timezone: 'UTC' }]);
    clock.advance(60_000);
    expect(fired.map((f) => f.rule)).toEqual(['a', 'b']);
    expect(scheduler.nextRun('a')).toBeUndefined();
    scheduler.stop();
  });

  it('reports invalid patterns by rule; unknown time zones are refused with the config', () => {
    const config = daemonConfig([
      { name: 'bad-pattern', trigger: { schedule: '61 * * * *' } },
      { name: 'seven-fields', trigger: { schedule: '0 0 0 * * * 2030' } },
      { name: 'good', trigger: { schedule: '0 */6 * * *' } },
    ]);
    const problems = validateSchedules(config);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^rule bad-pattern: trigger.schedule "61 \* \* \* \*"/);
    expect(problems[1]).toMatch(/^rule seven-fields:/);
    // The config schema checks zones itself (every command, not only the daemon), naming the key.
    expect(() => daemonConfig([{ name: 'bad-zone', trigger: { schedule: '0 2 * * *', timezone: 'Mars/Olympus' } }])).toThrow(/rules\[0\]\.trigger\.timezone: unknown time zone "Mars\/Olympus"/);
  });
});

describe('scheduled runs in the daemon', () => {
  let daemon: Daemon | undefined;
  afterEach(async () => {
    await daemon?.stop(0);
    daemon = undefined;
  });

  it('starts a run of the rule when its schedule fires, in the daemon time zone by default', async () => {
    const clock = new FakeClock('2024-06-01T17:59:00Z');
    const fakes = fakeEngines();
    const config = daemonConfig([{ name: 'nightly', trigger: { schedule: '0 2 * * *' } }, { name: 'manual-only' }], { timezone: 'Asia/Shanghai' });
    daemon = new Daemon({ config, clock, createEngine: fakes.factory });
    await daemon.start();
    expect(fakes.current().runs).toHaveLength(0);
    clock.advance(59_000);
    expect(fakes.current().runs).toHaveLength(0);
    clock.advance(1_000);
    const run = await fakes.current().nextRun(0);
    expect(run.rule).toBe('nightly');
    expect(run.artifacts).toBeUndefined(); // a full run lists the source
    run.finish({ artifacts: { planned: 2, copied: 2, present: 0, skipped: 0, failed: 0 } });
    const e = await eventually(() => daemon!.history.list().find((x) => x.status === 'ok'));
    expect(e.triggers[0]).toMatchObject({ type: 'schedule', schedule: '0 2 * * *', timezone: 'Asia/Shanghai', at: '2024-06-01T18:00:00.000Z' });
    expect(e.artifacts.copied).toBe(2);
    expect(daemon.scheduler.nextRun('nightly')?.toISOString()).toBe('2024-06-02T18:00:00.000Z');
  });
});

// Cron schedules: `trigger: { schedule: "0 */6 * * *", timezone: "Asia/Shanghai" }` fires the rule's
// run at each matching minute (or second, with a 6-field pattern). croner computes the next time;
// the timers go through an injectable Clock so tests drive schedules with a fake clock.
import { Cron } from 'croner';
import type { FerryConfig, RuleConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import { type Clock, type TimerHandle, systemClock } from './clock.js';

/** Timers longer than this are re-armed on wake-up (setTimeout overflows past 2^31-1 ms, and a clock may jump). */
const MAX_TIMER_MS = 60 * 60 * 1000;

export interface ScheduleSpec {
  rule: string;
  pattern: string;
  timezone?: string | undefined;
}

export type FireHandler = (rule: string, info: { schedule: string; timezone?: string | undefined; at: Date }) => void;

/** Builds the croner pattern object, throwing a readable error for a bad pattern or time zone. */
export function compileSchedule(pattern: string, timezone?: string): Cron {
  // Standard 5-field cron, or 6 fields with seconds first; day-of-month and day-of-week are OR-ed as in
  // Vixie cron (croner's default). No function is passed, so croner arms no timer of its own.
  const cron = new Cron(pattern, { mode: '5-or-6-parts', paused: true, ...(timezone ? { timezone } : {}) });
  // An unknown time zone only shows when a date is computed.
  cron.nextRun(new Date(0));
  return cron;
}

/** The rules' schedules, with the daemon's default time zone applied. */
export function schedulesOf(config: FerryConfig): ScheduleSpec[] {
  return config.rules.flatMap((rule: RuleConfig) =>
    rule.enabled && typeof rule.trigger === 'object'
      ? [{ rule: rule.name, pattern: rule.trigger.schedule, timezone: rule.trigger.timezone ?? config.daemon?.timezone }]
      : [],
  );
}

/** Problems with the config's schedules, each as "rules[name].trigger: message"; empty when all are valid. */
export function validateSchedules(config: FerryConfig): string[] {
  const problems: string[] = [];
  for (const s of schedulesOf(config)) {
    try {
      compileSchedule(s.pattern, s.timezone);
    } catch (err) {
      problems.push(`rule ${s.rule}: trigger.schedule ${JSON.stringify(s.pattern)}${s.timezone ? ` (time zone ${s.timezone})` : ''}: ${(err as Error).message}`);
    }
  }
  return problems;
}

interface Armed {
  spec: ScheduleSpec;
  cron: Cron;
  next: Date | null;
  timer?: TimerHandle;
}

export class Scheduler {
  private armed = new Map<string, Armed>();
  private stopped = false;

  constructor(
    private readonly onFire: FireHandler,
    private readonly logger: Logger,
    private readonly clock: Clock = systemClock,
  ) {}

  /** Replaces every schedule (start-up and config reload). Invalid schedules are logged and skipped. */
  update(specs: ScheduleSpec[]): void {
    this.clear();
    this.stopped = false;
    for (const spec of specs) {
      let cron: Cron;
      try {
        cron = compileSchedule(spec.pattern, spec.timezone);
      } catch (err) {
        this.logger.error({ rule: spec.rule, schedule: spec.pattern, err: (err as Error).message }, 'invalid schedule, rule not scheduled');
        continue;
      }
      const entry: Armed = { spec, cron, next: null };
      this.armed.set(spec.rule, entry);
      this.arm(entry, new Date(this.clock.now()));
    }
  }

  /** When the rule fires next, if it has a schedule. */
  nextRun(rule: string): Date | undefined {
    return this.armed.get(rule)?.next ?? undefined;
  }

  stop(): void {
    this.stopped = true;
    this.clear();
  }

  private clear(): void {
    for (const entry of this.armed.values()) if (entry.timer !== undefined) this.clock.clearTimer(entry.timer);
    this.armed.clear();
  }

  private arm(entry: Armed, after: Date): void {
    entry.next = entry.cron.nextRun(after);
    if (!entry.next) return; // a pattern that never matches again
    this.wait(entry);
  }

  private wait(entry: Armed): void {
    const delay = Math.max(0, entry.next!.getTime() - this.clock.now());
    entry.timer = this.clock.setTimer(() => this.wake(entry), Math.min(delay, MAX_TIMER_MS));
  }

  private wake(entry: Armed): void {
    entry.timer = undefined;
    if (this.stopped || this.armed.get(entry.spec.rule) !== entry || !entry.next) return;
    const due = entry.next;
    if (this.clock.now() < due.getTime()) {
      this.wait(entry); // a capped timer, or a timer that fired early
      return;
    }
    // Arm the next occurrence before firing, so a slow or failing handler never skips one; occurrences
    // missed while the process was suspended fire once, not once each.
    this.arm(entry, new Date(Math.max(due.getTime(), this.clock.now())));
    try {
      this.onFire(entry.spec.rule, { schedule: entry.spec.pattern, timezone: entry.spec.timezone, at: due });
    } catch (err) {
      this.logger.error({ rule: entry.spec.rule, err: (err as Error).message }, 'scheduled trigger failed');
    }
  }
}

// The progress display of the CLI: a live multi-line display on a TTY (stderr), plain periodic log
// lines (pino, every ~10 s) otherwise, nothing with --quiet. The counting and the rendering are in
// engine/progress.ts.
import type { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import type { Logger } from 'pino';
import { type ProgressSnapshot, ProgressTracker, type TrackerOptions, formatProgressLine, progressFields, renderProgress } from '../engine/progress.js';
import type { TransferEvents } from '../transfer/stats.js';

// ---------------------------------------------------------------------------------------------
// Output

export type ProgressMode = 'tty' | 'log' | 'none';

/** tty on an interactive stderr, periodic log lines otherwise, none when quiet. */
export function progressMode(opts: { quiet?: boolean | undefined; isTTY?: boolean | undefined }): ProgressMode {
  if (opts.quiet) return 'none';
  return opts.isTTY ? 'tty' : 'log';
}

export interface ProgressDisplayOptions extends TrackerOptions {
  mode: ProgressMode;
  /** where the TTY display goes (stderr) */
  stream?: NodeJS.WriteStream | undefined;
  /** redraw period on a TTY, ms (default 250) */
  ttyIntervalMs?: number | undefined;
  /** log period, ms (default 10 000) */
  logIntervalMs?: number | undefined;
}

const ESC = '\u001b[';

/**
 * Drives the output: start() after attaching, stop() before printing the report (it erases the TTY
 * display). On a TTY, logs must go through `logStream()` so they are written above the display
 * instead of being torn by it.
 */
export class ProgressDisplay {
  readonly tracker: ProgressTracker;
  private timer: NodeJS.Timeout | undefined;
  private drawn = 0;
  private readonly stream: NodeJS.WriteStream;
  private logger: Logger | undefined;

  constructor(private readonly opts: ProgressDisplayOptions) {
    this.tracker = new ProgressTracker(opts);
    this.stream = opts.stream ?? process.stderr;
  }

  get mode(): ProgressMode {
    return this.opts.mode;
  }

  /** Starts following `events`; `rules` are shown as listing until they plan; log mode writes to `logger`. */
  start(events: EventEmitter<TransferEvents>, opts: { rules?: string[] | undefined; logger?: Logger | undefined } = {}): this {
    if (this.opts.mode === 'none') return this;
    this.logger = opts.logger;
    this.tracker.expectRules(opts.rules ?? []);
    this.tracker.attach(events);
    const tty = this.opts.mode === 'tty';
    const period = tty ? (this.opts.ttyIntervalMs ?? 250) : (this.opts.logIntervalMs ?? 10_000);
    this.timer = setInterval(() => (tty ? this.draw() : this.log()), period);
    this.timer.unref();
    if (tty) this.draw();
    return this;
  }

  private logged = 0;

  private log(): void {
    const s = this.tracker.snapshot();
    this.logged++;
    this.logger?.info({ progress: progressFields(s) }, formatProgressLine(s));
  }

  private draw(): void {
    const lines = renderProgress(this.tracker.snapshot(), { width: (this.stream.columns || 100) - 1 });
    this.stream.write(this.eraseText() + lines.join('\n') + '\n');
    this.drawn = lines.length;
  }

  private eraseText(): string {
    const text = this.drawn ? `${ESC}${this.drawn}A\r${ESC}J` : '';
    this.drawn = 0;
    return text;
  }

  /** A stream for the logger on a TTY: each line is written above the display, which is redrawn. */
  logStream(): Writable {
    return new Writable({
      write: (chunk: Buffer, _enc, done) => {
        if (this.timer && this.opts.mode === 'tty') {
          const redraw = this.drawn > 0;
          this.stream.write(this.eraseText() + chunk.toString());
          if (redraw) this.draw();
        } else this.stream.write(chunk);
        done();
      },
    });
  }

  /** Stops updating; erases the TTY display (a final log line in log mode, if it logged any). */
  stop(): ProgressSnapshot {
    if (this.timer) clearInterval(this.timer);
    const wasRunning = this.timer !== undefined;
    this.timer = undefined;
    const snap = this.tracker.snapshot();
    if (wasRunning && this.opts.mode === 'tty') this.stream.write(this.eraseText());
    if (wasRunning && this.opts.mode === 'log' && this.logged > 0) this.logger?.info({ progress: progressFields(snap) }, formatProgressLine(snap));
    this.tracker.detach();
    return snap;
  }
}

// Child processes for the benchmark: wall-clock time, peak RSS (VmHWM from /proc/<pid>/status, polled;
// the kernel keeps the high-water mark, so polling only has to catch it before exit), stdout captured,
// stderr kept in a log file when asked (pino logs of Ferry), and an optional kill switch.
import { spawn } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  ms: number;
  /** Peak resident set size in bytes (0 when /proc is unavailable). */
  peakRss: number;
  stdout: string;
  stderrTail: string;
  killed: boolean;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  /** Append the child's stderr here. */
  logFile?: string | undefined;
  /** Polled every `pollMs`; when it returns true the child is sent `killSignal` (default SIGKILL). */
  killWhen?: (() => boolean) | undefined;
  killSignal?: NodeJS.Signals | undefined;
  pollMs?: number;
  /** Called with each poll (after the RSS read). */
  onPoll?: (() => void) | undefined;
}

function readHwm(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /VmHWM:\s+(\d+)\s+kB/.exec(status);
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export function runChild(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
    const out: Buffer[] = [];
    let errTail = '';
    const log = opts.logFile ? createWriteStream(opts.logFile, { flags: 'a' }) : undefined;
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => {
      log?.write(c);
      errTail = (errTail + c.toString('utf8')).slice(-4000);
    });
    let peak = 0;
    let killed = false;
    const poll = (): void => {
      if (child.pid !== undefined && child.exitCode === null) peak = Math.max(peak, readHwm(child.pid));
      opts.onPoll?.();
      if (!killed && opts.killWhen?.()) {
        killed = true;
        child.kill(opts.killSignal ?? 'SIGKILL');
      }
    };
    const timer = setInterval(poll, opts.pollMs ?? 50);
    child.on('error', (err) => {
      clearInterval(timer);
      reject(err);
    });
    child.on('exit', () => {
      // stdio may still be draining; 'close' below resolves.
    });
    child.on('close', (code, signal) => {
      clearInterval(timer);
      log?.end();
      resolve({ code, signal, ms: performance.now() - started, peakRss: peak, stdout: Buffer.concat(out).toString('utf8'), stderrTail: errTail, killed });
    });
  });
}

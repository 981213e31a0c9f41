// Runs the CLI as a child process, the way users and CI run it: argv in, exit code, stdout and stderr
// out. test/cli/ferry.ts is bin/ferry.js with src/ compiled on the fly (tsx), so these tests never
// run a stale or missing dist/.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ENTRY = fileURLToPath(new URL('./ferry.ts', import.meta.url));

export interface FerryRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  timeoutMs?: number;
}

/** The command line that starts the CLI from source: [node, ...args]. */
export function ferryCommand(args: string[]): [string, string[]] {
  return [process.execPath, ['--import', 'tsx', ENTRY, ...args]];
}

export function runFerry(args: string[], opts: RunOptions = {}): Promise<FerryRun> {
  const [cmd, argv] = ferryCommand(args);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, {
      cwd: opts.cwd ?? REPO_ROOT,
      env: { ...process.env, FERRY_LOG_LEVEL: 'info', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 45_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Every non-empty stderr line must be a pino JSON record (logs never mix with the report). */
export function logRecords(stderr: string): Record<string, unknown>[] {
  return stderr
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('ferry: '))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

// Running Ferry for the benchmark: the real CLI (`node bin/ferry.js sync --config … --output json`) as
// a child process, so its time includes start-up, planning and everything a user waits for, and its
// peak RSS is its own.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { USER } from './link.js';
import { type RunResult, runChild } from './proc.js';

export interface FerryReport {
  status: string;
  durationMs: number;
  totals: { artifacts: Record<string, number>; blobs: { uploaded: number; mounted: number; skipped: number }; bytes: number };
  rules: { status: string; error?: string; items: { status: string; reason?: string; source?: string }[] }[];
}

export interface FerryRun extends RunResult {
  report: FerryReport | undefined;
}

export const FERRY_BIN = 'bin/ferry.js';

/**
 * The node flags of bin/ferry.js's shebang (`#!/usr/bin/env -S node <flags>`): the launcher runs with
 * them wherever its shebang is used (npm's bin link, the container image), so the benchmark passes
 * them to `process.execPath` too, rather than measuring a Ferry nobody runs.
 */
export function nodeFlags(): string[] {
  // FERRY_BENCH_NODE_FLAGS replaces them (empty: none), to measure what the flags change.
  const given = process.env.FERRY_BENCH_NODE_FLAGS;
  if (given !== undefined) return given.split(/\s+/).filter(Boolean);
  const first = readFileSync(FERRY_BIN, 'utf8').split('\n', 1)[0] ?? '';
  const m = /^#!\/usr\/bin\/env -S node\b(.*)$/.exec(first);
  return m ? m[1]!.trim().split(/\s+/).filter(Boolean) : [];
}

/** argv for `process.execPath` running the CLI as its launcher does. */
export function ferryArgs(args: string[]): string[] {
  return [...nodeFlags(), FERRY_BIN, ...args];
}

export function ferryBuilt(): boolean {
  return existsSync('dist/cli/main.js');
}

export interface FerryJob {
  dir: string;
  sourceUrl: string;
  destinationUrl: string;
  stateDir: string;
  transfer?: Record<string, unknown>;
  filters?: Record<string, unknown>;
  logFile?: string | undefined;
  killWhen?: (() => boolean) | undefined;
  /** What killWhen sends (default SIGKILL; SIGTERM for a graceful stop). */
  killSignal?: NodeJS.Signals | undefined;
  onPoll?: (() => void) | undefined;
}

export function writeConfig(job: FerryJob): string {
  mkdirSync(job.dir, { recursive: true });
  const file = join(job.dir, 'ferry.yaml');
  const config = {
    registries: {
      source: { url: job.sourceUrl },
      destination: { url: job.destinationUrl, username: USER.username, password: USER.password },
    },
    transfer: { stateDir: job.stateDir, ...job.transfer },
    rules: [{ name: 'bench', source: 'source', destination: 'destination', ...(job.filters ? { filters: job.filters } : {}) }],
  };
  writeFileSync(file, stringify(config));
  return file;
}

export async function runFerrySync(job: FerryJob): Promise<FerryRun> {
  const config = writeConfig(job);
  const res = await runChild(process.execPath, ferryArgs(['sync', '--config', config, '--output', 'json']), {
    logFile: job.logFile,
    killWhen: job.killWhen,
    killSignal: job.killSignal,
    onPoll: job.onPoll,
    env: { ...process.env, FERRY_LOG_LEVEL: process.env.FERRY_LOG_LEVEL ?? 'info' },
  });
  let report: FerryReport | undefined;
  if (!res.killed) {
    try {
      report = JSON.parse(res.stdout) as FerryReport;
    } catch {
      report = undefined;
    }
  }
  return { ...res, report };
}

/** Throws with the useful parts when a sync that should have succeeded did not. */
export function assertOk(run: FerryRun, what: string): FerryReport {
  const r = run.report;
  if (run.code === 0 && r && r.status === 'ok') return r;
  const failures = r?.rules.flatMap((x) => [x.error ?? '', ...x.items.filter((i) => i.status === 'failed').map((i) => `${i.source}: ${i.reason}`)]).filter(Boolean) ?? [];
  throw new Error(`${what}: ferry exited ${run.code ?? run.signal} (status ${r?.status ?? 'no report'})\n${failures.slice(0, 5).join('\n')}\n${run.stderrTail.slice(-1500)}`);
}

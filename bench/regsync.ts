// regsync (regclient), for comparison: `regsync once` with one `type: registry` step (the source's
// catalog, every repository, every tag) into the destination under the same names, with the same
// limits as Ferry: `defaults.parallel` images at a time and `reqConcurrent` requests per registry both
// set to the benchmark's concurrency (regclient's defaults are 1 image and 3 requests per registry).
// Referrers and digest tags are off (regsync's defaults; the data set has none). The binary is the one
// scripts/install-go-tools.mjs builds; without it (no Go) the regsync rows are skipped with a note.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { USER } from './link.js';
import { type RunResult, runChild } from './proc.js';

/** Where install-go-tools puts regsync (the version pinned in scripts/go-tools.json). */
export function regsyncPath(): string | undefined {
  const table = JSON.parse(readFileSync('scripts/go-tools.json', 'utf8')) as { tools: { name: string; version?: string; bins: string[] }[] };
  const tool = table.tools.find((t) => t.bins.includes('regsync'));
  if (!tool?.version) return undefined;
  const path = join(process.env.FERRY_TOOLS_DIR || join(homedir(), '.cache', 'ferry-tools'), `${tool.name}@${tool.version}`, 'bin', 'regsync');
  try {
    accessSync(path, constants.X_OK);
    return path;
  } catch {
    return undefined;
  }
}

/** Builds regsync when Go is there and it is missing; undefined when it cannot be had. */
export function ensureRegsync(): string | undefined {
  const found = regsyncPath();
  if (found) return found;
  spawnSync(process.execPath, ['scripts/install-go-tools.mjs', 'regclient'], { stdio: ['ignore', 2, 2] });
  return regsyncPath();
}

export function regsyncVersion(bin: string): string | undefined {
  const r = spawnSync(bin, ['version', '--format', '{{.VCSTag}}'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return undefined;
  return `regsync ${r.stdout.trim() || 'unknown'}`;
}

export interface RegsyncRun {
  ms: number;
  peakRss: number;
  run: RunResult;
}

export async function regsyncOnce(bin: string, work: string, sourceHost: string, destinationHost: string, concurrency: number): Promise<RegsyncRun> {
  const config = {
    version: 1,
    creds: [
      // Credentials for the source too (the scale set's source has token auth; an anonymous source never asks).
      { registry: sourceHost, tls: 'disabled', user: USER.username, pass: USER.password, reqConcurrent: concurrency },
      { registry: destinationHost, tls: 'disabled', user: USER.username, pass: USER.password, reqConcurrent: concurrency },
    ],
    defaults: { parallel: concurrency, skipDockerConfig: true },
    sync: [{ source: sourceHost, target: destinationHost, type: 'registry' }],
  };
  // JSON is YAML: no YAML writer needed.
  const file = join(work, `regsync-${createHash('sha256').update(destinationHost).digest('hex').slice(0, 8)}.yml`);
  writeFileSync(file, JSON.stringify(config, null, 2));
  const started = performance.now();
  const run = await runChild(bin, ['once', '-c', file, '-v', 'warn'], { env: { ...process.env, HOME: work } });
  const ms = performance.now() - started;
  if (run.code !== 0) throw new Error(`regsync once exited ${run.code ?? run.signal}:\n${run.stderrTail}`);
  return { ms, peakRss: run.peakRss, run };
}

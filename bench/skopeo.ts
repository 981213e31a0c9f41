// skopeo, for comparison: `skopeo sync --all --src docker --dest docker` once per repository (skopeo's
// docker source is one repository; all its tags), in sequence, as a user scripting it would. skopeo
// appends the repository's last path component to the destination, so `team/svc-00` goes to
// `DEST/team` and lands at `DEST/team/svc-00`: the same names as Ferry's copy.
import { spawnSync } from 'node:child_process';
import { USER } from './link.js';
import { type RunResult, runChild } from './proc.js';

export function skopeoVersion(): string | undefined {
  const r = spawnSync('skopeo', ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return undefined;
  return r.stdout.trim();
}

export interface SkopeoRun {
  ms: number;
  peakRss: number;
  runs: RunResult[];
}

export async function skopeoSync(sourceHost: string, destinationHost: string, repositories: string[]): Promise<SkopeoRun> {
  const started = performance.now();
  const runs: RunResult[] = [];
  for (const repo of repositories) {
    const parent = repo.includes('/') ? repo.slice(0, repo.lastIndexOf('/')) : '';
    const dest = parent ? `${destinationHost}/${parent}` : destinationHost;
    const args = [
      'sync',
      '--all',
      '--src',
      'docker',
      '--dest',
      'docker',
      '--src-tls-verify=false',
      '--dest-tls-verify=false',
      '--dest-creds',
      `${USER.username}:${USER.password}`,
      `${sourceHost}/${repo}`,
      dest,
    ];
    const r = await runChild('skopeo', args, { env: { ...process.env, HOME: process.env.HOME ?? '/tmp' } });
    if (r.code !== 0) throw new Error(`skopeo ${args.join(' ')} exited ${r.code ?? r.signal}:\n${r.stderrTail}`);
    runs.push(r);
  }
  return { ms: performance.now() - started, peakRss: Math.max(...runs.map((r) => r.peakRss)), runs };
}

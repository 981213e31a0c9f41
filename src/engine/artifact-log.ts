// The per-run artifact log: one JSON line per artifact result, in <stateDir>/runs/. The report keeps
// totals and a capped sample (failures first); this file has every artifact, so a million-tag run
// stays inspectable (`jq 'select(.status=="failed")' <file>`) without the report holding it.
import { createWriteStream, mkdirSync, readdirSync, rmSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import type { ArtifactResult } from '../transfer/stats.js';

/** How many run logs are kept in <stateDir>/runs (oldest removed first). */
export const RUN_LOGS_KEPT = 50;

export class ArtifactLog {
  private readonly stream: WriteStream;
  private failed: Error | undefined;

  private constructor(readonly file: string) {
    this.stream = createWriteStream(file, { flags: 'a' });
    this.stream.on('error', (err) => (this.failed = err));
  }

  /** Opens a new log for one rule's run; undefined without a state directory. */
  static open(stateDir: string | undefined, rule: string, startedAt: Date): ArtifactLog | undefined {
    if (!stateDir) return undefined;
    const dir = join(stateDir, 'runs');
    mkdirSync(dir, { recursive: true });
    prune(dir, RUN_LOGS_KEPT - 1);
    const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
    return new ArtifactLog(join(dir, `${stamp}-${rule.replace(/[^A-Za-z0-9._-]/g, '_')}.jsonl`));
  }

  write(result: ArtifactResult): void {
    if (this.failed) return; // a full disk must not fail the copy; the report says the log is incomplete
    this.stream.write(`${JSON.stringify({ at: new Date().toISOString(), ...result })}\n`);
  }

  /** Flushes and closes; resolves with the error that stopped writing, if any. */
  async close(): Promise<Error | undefined> {
    await new Promise<void>((resolve) => this.stream.end(() => resolve()));
    return this.failed;
  }
}

function prune(dir: string, keep: number): void {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.jsonl')).sort();
  } catch {
    return;
  }
  for (const f of files.slice(0, Math.max(0, files.length - keep))) rmSync(join(dir, f), { force: true });
}

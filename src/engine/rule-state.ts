// What each rule put at its destination, per source tag: the memory behind `deleteRemote` (the storage
// only; what gets deleted, and when, is decided in delete-remote.ts).
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface PushedTag {
  /** Destination repository and tag. */
  repository: string;
  tag: string;
  /** Digest the rule pushed under that tag. */
  digest: string;
}

export interface RuleStateFile {
  version: 1;
  destination: string;
  /** "<source repository>:<tag>" → what was pushed for it */
  entries: Record<string, PushedTag>;
}

export class RuleState {
  private readonly memory = new Map<string, RuleStateFile>();

  /** `dir` undefined keeps the state in memory (tests, one-off runs); `readOnly` never writes to `dir`. */
  constructor(
    private readonly dir: string | undefined,
    private readonly readOnly = false,
  ) {}

  private file(rule: string): string {
    return join(this.dir!, 'rules', `${rule}.json`);
  }

  load(rule: string, destination: string): RuleStateFile {
    let state = this.memory.get(rule);
    if (!state && this.dir) {
      try {
        state = JSON.parse(readFileSync(this.file(rule), 'utf8')) as RuleStateFile;
      } catch {
        state = undefined;
      }
    }
    // A rule pointed at another destination starts with a clean slate: never delete elsewhere.
    if (!state || state.destination !== destination) state = { version: 1, destination, entries: {} };
    this.memory.set(rule, state);
    return state;
  }

  save(rule: string, state: RuleStateFile): void {
    this.memory.set(rule, state);
    if (!this.dir || this.readOnly) return;
    mkdirSync(join(this.dir, 'rules'), { recursive: true });
    const tmp = `${this.file(rule)}.tmp`;
    writeFileSync(tmp, JSON.stringify(state));
    renameSync(tmp, this.file(rule)); // atomic: a crash leaves the old or the new state, never half
  }
}

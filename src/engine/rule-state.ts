// What each rule put at its destination, per source tag: the memory behind `deleteRemote`. A tag is
// deleted at the destination only when this rule pushed it, it is gone from a complete source listing,
// and the destination tag still points at the digest the rule pushed.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface PushedTag {
  /** Destination repository and tag. */
  repository: string;
  tag: string;
  /** Digest the rule pushed under that tag. */
  digest: string;
}

interface RuleStateFile {
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

export interface DeletionCandidate extends PushedTag {
  sourceRepository: string;
  sourceTag: string;
}

/**
 * Tags this rule pushed whose source tag is gone from a complete listing. `inScope` limits the check to
 * repositories the current run listed (filters, shards): nothing outside it is judged gone.
 */
export function deletionCandidates(
  state: RuleStateFile,
  seen: Set<string>,
  inScope: (sourceRepository: string) => boolean,
): { delete: DeletionCandidate[]; keep: { candidate: DeletionCandidate; reason: string }[] } {
  const gone: DeletionCandidate[] = [];
  const alive = new Map<string, string>(); // "<dst repo>@<digest>" → a source tag still referencing it
  for (const [key, pushed] of Object.entries(state.entries)) {
    const i = key.lastIndexOf(':');
    const sourceRepository = key.slice(0, i);
    const sourceTag = key.slice(i + 1);
    if (!inScope(sourceRepository) || seen.has(key)) {
      alive.set(`${pushed.repository}@${pushed.digest}`, key);
      continue;
    }
    gone.push({ ...pushed, sourceRepository, sourceTag });
  }
  const result = { delete: [] as DeletionCandidate[], keep: [] as { candidate: DeletionCandidate; reason: string }[] };
  for (const c of gone) {
    // Registries delete manifests, not tags: deleting this digest would take every tag pointing at it.
    const other = alive.get(`${c.repository}@${c.digest}`);
    if (other) result.keep.push({ candidate: c, reason: `the same manifest is still published for ${other}` });
    else result.delete.push(c);
  }
  return result;
}

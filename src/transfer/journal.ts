// The resume journal: which blobs and manifests reached which destination repository. A rerun skips
// journaled blobs without a request, and mounts from a repository the journal says holds the blob.
// Stored as append-only JSON lines with fsync after each record, so a SIGKILL loses at most the
// records being written; a torn last line is ignored on load.
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export interface JournalRecord {
  /** 'b' blob, 'm' manifest, 'u' upload session checkpoint, 'x' upload session finished/abandoned */
  t: 'b' | 'm' | 'u' | 'x';
  /** destination registry key (name@host) */
  r: string;
  /** repository */
  p: string;
  /** digest */
  d: string;
  /** size (blobs) */
  s?: number;
  /** unix ms when recorded */
  at: number;
  /** upload session: location and confirmed offset */
  loc?: string;
  off?: number;
}

export interface JournalEntry {
  at: number;
  size?: number | undefined;
}

export interface UploadCheckpoint {
  location: string;
  offset: number;
  at: number;
}

export class Journal {
  private readonly blobs = new Map<string, JournalEntry>();
  /** registry|digest → repositories holding it (mount sources) */
  private readonly locations = new Map<string, Set<string>>();
  private readonly manifests = new Map<string, JournalEntry>();
  private readonly uploads = new Map<string, UploadCheckpoint>();
  private fd: number | undefined;

  private constructor(readonly file: string | undefined) {}

  /** Lines read when the journal was opened (superseded ones included). */
  private linesRead = 0;

  /**
   * Opens (or creates) the journal in `stateDir`; `undefined` keeps it in memory only. A journal whose
   * lines are mostly superseded (re-recorded blobs, finished upload checkpoints) is rewritten with
   * only its live records first, so it does not grow without bound over months of daemon runs.
   */
  static open(stateDir: string | undefined, opts: { compactAfterLines?: number } = {}): Journal {
    if (!stateDir) return new Journal(undefined);
    mkdirSync(stateDir, { recursive: true });
    const file = join(stateDir, 'journal.jsonl');
    const journal = new Journal(file);
    journal.load();
    journal.compactIfWasteful(opts.compactAfterLines ?? 10_000);
    journal.fd = openSync(file, 'a');
    return journal;
  }

  private compactIfWasteful(minLines: number): void {
    const live = this.blobs.size + this.manifests.size + this.uploads.size;
    if (this.linesRead < minLines || this.linesRead < 2 * live) return;
    const split = (key: string) => {
      const [r, p, d] = key.split('|') as [string, string, string];
      return { r, p, d };
    };
    const records: JournalRecord[] = [
      ...[...this.blobs].map(([k, e]): JournalRecord => ({ t: 'b', ...split(k), ...(e.size !== undefined ? { s: e.size } : {}), at: e.at })),
      ...[...this.manifests].map(([k, e]): JournalRecord => ({ t: 'm', ...split(k), at: e.at })),
      ...[...this.uploads].map(([k, u]): JournalRecord => ({ t: 'u', ...split(k), loc: u.location, off: u.offset, at: u.at })),
    ];
    // Written beside the journal and renamed over it: a crash leaves the old or the new file, whole.
    const tmp = `${this.file}.compact`;
    const fd = openSync(tmp, 'w');
    writeSync(fd, records.map((r) => `${JSON.stringify(r)}\n`).join(''));
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, this.file!);
  }

  private load(): void {
    let text: string;
    try {
      text = readFileSync(this.file!, 'utf8');
    } catch {
      return;
    }
    for (const line of text.split('\n')) {
      if (!line) continue;
      this.linesRead++;
      let rec: JournalRecord;
      try {
        rec = JSON.parse(line) as JournalRecord;
      } catch {
        continue; // torn write from a kill: the record never counted
      }
      this.apply(rec);
    }
  }

  private apply(rec: JournalRecord): void {
    const key = `${rec.r}|${rec.p}|${rec.d}`;
    switch (rec.t) {
      case 'b': {
        this.blobs.set(key, { at: rec.at, size: rec.s });
        const lk = `${rec.r}|${rec.d}`;
        let set = this.locations.get(lk);
        if (!set) this.locations.set(lk, (set = new Set()));
        set.add(rec.p);
        this.uploads.delete(key);
        break;
      }
      case 'm':
        this.manifests.set(key, { at: rec.at });
        break;
      case 'u':
        this.uploads.set(key, { location: rec.loc!, offset: rec.off ?? 0, at: rec.at });
        break;
      case 'x':
        this.uploads.delete(key);
        break;
    }
  }

  private append(rec: JournalRecord): void {
    this.apply(rec);
    if (this.fd === undefined) return;
    writeSync(this.fd, `${JSON.stringify(rec)}\n`);
    fsyncSync(this.fd);
  }

  blob(registry: string, repository: string, digest: string): JournalEntry | undefined {
    return this.blobs.get(`${registry}|${repository}|${digest}`);
  }

  /** Repositories of `registry` that hold `digest` according to the journal. */
  blobLocations(registry: string, digest: string): string[] {
    return [...(this.locations.get(`${registry}|${digest}`) ?? [])];
  }

  recordBlob(registry: string, repository: string, digest: string, size: number): void {
    this.append({ t: 'b', r: registry, p: repository, d: digest, s: size, at: Date.now() });
  }

  /** Forgets a blob the destination turned out not to have (deleted, garbage-collected). */
  forgetBlob(registry: string, repository: string, digest: string): void {
    this.blobs.delete(`${registry}|${repository}|${digest}`);
    this.locations.get(`${registry}|${digest}`)?.delete(repository);
  }

  manifest(registry: string, repository: string, digest: string): JournalEntry | undefined {
    return this.manifests.get(`${registry}|${repository}|${digest}`);
  }

  recordManifest(registry: string, repository: string, digest: string): void {
    this.append({ t: 'm', r: registry, p: repository, d: digest, at: Date.now() });
  }

  upload(registry: string, repository: string, digest: string): UploadCheckpoint | undefined {
    return this.uploads.get(`${registry}|${repository}|${digest}`);
  }

  checkpointUpload(registry: string, repository: string, digest: string, location: string, offset: number): void {
    this.append({ t: 'u', r: registry, p: repository, d: digest, loc: location, off: offset, at: Date.now() });
  }

  clearUpload(registry: string, repository: string, digest: string): void {
    if (!this.uploads.has(`${registry}|${repository}|${digest}`)) return;
    this.append({ t: 'x', r: registry, p: repository, d: digest, at: Date.now() });
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

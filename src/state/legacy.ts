// Imports the state files of earlier Ferry versions into the database on first open, then moves them
// aside (`<name>.imported`) so that they are read once: journal.jsonl (blobs, manifests, upload
// checkpoints, append-only JSON lines) and rules/<rule>.json (what each rule pushed). The daemon's
// executions/ directory is imported by the daemon's history (it knows the execution format).
import { closeSync, existsSync, openSync, readFileSync, readSync, readdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { REGISTRY_ID, encodeDigest } from './codec.js';

export const LEGACY_JOURNAL = 'journal.jsonl';
export const LEGACY_RULES = 'rules';

interface JournalLine {
  t: 'b' | 'm' | 'u' | 'x';
  r: string;
  p: string;
  d: string;
  s?: number;
  at: number;
  loc?: string;
  off?: number;
}

/** Whether `dir` holds state files of an earlier version. */
export function hasLegacyState(dir: string): boolean {
  return existsSync(join(dir, LEGACY_JOURNAL)) || existsSync(join(dir, LEGACY_RULES));
}

/**
 * Imports what `dir` holds into `db` (one transaction per file). `moveAside` false (dry runs) reads
 * the files without touching them.
 */
export function importLegacyState(db: Database.Database, dir: string, logger: Logger, moveAside = true): void {
  const journal = join(dir, LEGACY_JOURNAL);
  if (existsSync(journal)) {
    const { records, skipped } = db.transaction(() => importJournal(db, journal))();
    logger.info({ file: journal, records, skipped }, 'imported the resume journal into the state database');
    if (moveAside) renameSync(journal, aside(journal));
  }
  const rules = join(dir, LEGACY_RULES);
  if (existsSync(rules)) {
    db.transaction(() => importRuleStates(db, rules, logger, moveAside))();
    if (moveAside) renameSync(rules, aside(rules));
  }
}

function aside(path: string): string {
  let name = `${path}.imported`;
  for (let i = 1; existsSync(name); i++) name = `${path}.imported.${i}`;
  return name;
}

/** Reads the journal line by line (never whole: it may be big) and applies each record. */
function importJournal(db: Database.Database, file: string): { records: number; skipped: number } {
  const putRegistry = db.prepare('INSERT OR IGNORE INTO registries (key) VALUES (?)');
  const putBlob = db.prepare(`INSERT OR REPLACE INTO blobs (registry, digest, repository, size, at) VALUES (${REGISTRY_ID}, ?, ?, ?, ?)`);
  const putManifest = db.prepare(`INSERT OR REPLACE INTO manifests (registry, repository, digest, at) VALUES (${REGISTRY_ID}, ?, ?, ?)`);
  const putUpload = db.prepare(`INSERT OR REPLACE INTO uploads (registry, repository, digest, location, offset, at) VALUES (${REGISTRY_ID}, ?, ?, ?, ?, ?)`);
  const delUpload = db.prepare(`DELETE FROM uploads WHERE registry = ${REGISTRY_ID} AND repository = ? AND digest = ?`);
  let records = 0;
  let skipped = 0;
  for (const line of lines(file)) {
    const rec = parseLine(line);
    if (!rec) {
      skipped++;
      continue;
    }
    records++;
    putRegistry.run(rec.r);
    const d = encodeDigest(rec.d);
    switch (rec.t) {
      case 'b':
        putBlob.run(rec.r, d, rec.p, rec.s ?? null, rec.at);
        delUpload.run(rec.r, rec.p, d);
        break;
      case 'm':
        putManifest.run(rec.r, rec.p, d, rec.at);
        break;
      case 'u':
        if (typeof rec.loc === 'string') putUpload.run(rec.r, rec.p, d, rec.loc, rec.off ?? 0, rec.at);
        break;
      case 'x':
        delUpload.run(rec.r, rec.p, d);
        break;
    }
  }
  return { records, skipped };
}

/**
 * One journal line. A kill mid-write left a torn line, and the old journal appended the next record
 * right after it, on the same line: the torn prefix is dropped and the record after it kept.
 */
export function parseLine(line: string): JournalLine | undefined {
  const whole = tryParse(line);
  if (whole) return whole;
  const start = line.lastIndexOf('{"t":');
  return start > 0 ? tryParse(line.slice(start)) : undefined;
}

function tryParse(text: string): JournalLine | undefined {
  try {
    const rec = JSON.parse(text) as Partial<JournalLine>;
    if (!rec || typeof rec !== 'object') return undefined;
    if (!['b', 'm', 'u', 'x'].includes(rec.t as string) || typeof rec.r !== 'string' || typeof rec.p !== 'string' || typeof rec.d !== 'string') return undefined;
    return { ...rec, at: typeof rec.at === 'number' ? rec.at : 0 } as JournalLine;
  } catch {
    return undefined;
  }
}

function* lines(file: string): Iterable<string> {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(1 << 20);
    let rest = '';
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      const text = rest + buf.toString('utf8', 0, n);
      const parts = text.split('\n');
      rest = parts.pop()!;
      for (const p of parts) if (p) yield p;
    }
    if (rest) yield rest;
  } finally {
    closeSync(fd);
  }
}

interface RuleStateFile {
  version: 1;
  destination: string;
  entries: Record<string, { repository: string; tag: string; digest: string }>;
}

function importRuleStates(db: Database.Database, dir: string, logger: Logger, moveAside: boolean): void {
  const putDestination = db.prepare('INSERT OR REPLACE INTO rule_destinations (rule, destination) VALUES (?, ?)');
  const putTag = db.prepare('INSERT OR REPLACE INTO rule_tags (rule, source_repository, source_tag, repository, tag, digest) VALUES (?, ?, ?, ?, ?, ?)');
  for (const name of readdirSync(dir)) {
    if (!name.endsWith('.json')) continue;
    const file = join(dir, name);
    const rule = name.slice(0, -'.json'.length);
    let state: RuleStateFile;
    try {
      state = JSON.parse(readFileSync(file, 'utf8')) as RuleStateFile;
      if (!state || typeof state.destination !== 'string' || typeof state.entries !== 'object' || state.entries === null) throw new Error('not a rule state file');
    } catch (err) {
      // Never silently empty: the rule forgets what it pushed (deleteRemote deletes nothing of it), and says so.
      const copy = moveAside ? `${file}.corrupt` : file;
      logger.error(
        { rule, file, copy, err: (err as Error).message },
        'unreadable rule state: not imported, a copy is kept; deleteRemote will not delete what this rule pushed before',
      );
      if (moveAside) renameSync(file, copy);
      continue;
    }
    putDestination.run(rule, state.destination);
    for (const [key, pushed] of Object.entries(state.entries)) {
      const i = key.lastIndexOf(':');
      if (i <= 0 || !pushed || typeof pushed.digest !== 'string') continue;
      putTag.run(rule, key.slice(0, i), key.slice(i + 1), pushed.repository, pushed.tag, encodeDigest(pushed.digest));
    }
  }
}

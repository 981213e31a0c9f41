// Sizing of the state database: writes what a sync of TAGS tags records (per tag a manifest, a config
// and a unique layer blob, and the rule's pushed-tag entry; one base layer per repository of 20 tags)
// and prints bytes per tag of ferry.db. `node --import tsx bench/state-size.ts [TAGS]` (default 200,000).
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { SqliteState } from '../src/state/sqlite.js';
import type { PushedTag } from '../src/state/types.js';

const TAGS = Number(process.argv[2] ?? 200_000);
const PER_REPO = 20;
const digest = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;

const dir = mkdtempSync(join(tmpdir(), 'ferry-state-size-'));
const state = SqliteState.open(dir);
const reg = 'tcr@example.tencentcloudcr.com';
const started = Date.now();
const pushed: PushedTag[] = [];
for (let i = 0; i < TAGS; i++) {
  const r = Math.floor(i / PER_REPO);
  const src = `team-${String(r % 50).padStart(2, '0')}/service-${r}`;
  const dst = `mirror/${src}`;
  const tag = `v1.${i % PER_REPO}.0`;
  const manifest = digest(`m${i}`);
  if (i % PER_REPO === 0) void state.recordBlob(reg, dst, digest(`base${r % 50}`), 65_536);
  void state.recordBlob(reg, dst, digest(`c${i}`), 1_500);
  void state.recordBlob(reg, dst, digest(`l${i}`), 40_000);
  void state.recordManifest(reg, dst, manifest);
  pushed.push({ sourceRepository: src, sourceTag: tag, repository: dst, tag, digest: manifest });
  // The engine records a rule's pushed tags together at the end of its run.
  if (i % 1000 === 999) await state.recordPushed('idc-to-tcr', reg, pushed.splice(0));
}
await state.recordPushed('idc-to-tcr', reg, pushed.splice(0));
state.db.pragma('wal_checkpoint(TRUNCATE)');
const bytes = statSync(join(dir, 'ferry.db')).size;
const tables = state.db.prepare("SELECT name, sum(pgsize) AS bytes FROM dbstat GROUP BY name ORDER BY bytes DESC").all() as { name: string; bytes: number }[];
await state.close();
rmSync(dir, { recursive: true, force: true });
console.log(JSON.stringify({ tags: TAGS, bytes, bytesPerTag: Math.round(bytes / TAGS), perMillionTagsMB: Math.round(bytes / TAGS), seconds: (Date.now() - started) / 1000, tables }, null, 2));

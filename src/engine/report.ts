// The sync report: one JSON document for `--output json`, a table-like text for humans.
import { formatBytes } from '../config/units.js';
import type { PlanProblem, WorkItem } from '../plan/types.js';
import type { ArtifactResult, BlobCounts } from '../transfer/stats.js';

export interface ArtifactCounts {
  planned: number;
  copied: number;
  present: number;
  skipped: number;
  failed: number;
}

export interface PlannedCopy {
  source: string;
  destination: string;
  tags: string[];
  kind?: string | undefined;
  /** Filled by a dry run: copy | present | override | skip | delete | error */
  action?: string | undefined;
  /** Blobs missing at the destination repository, and their bytes. */
  blobs?: number | undefined;
  bytes?: number | undefined;
  error?: string | undefined;
}

export interface RuleReport {
  name: string;
  source: string;
  destination: string;
  /** ok: nothing failed; partial: some failed; failed: the rule could not run (listing failed); planned: dry run */
  status: 'ok' | 'partial' | 'failed' | 'planned' | 'cancelled';
  artifacts: ArtifactCounts;
  blobs: BlobCounts;
  referrers: number;
  bytes: number;
  durationMs: number;
  items: ArtifactResult[];
  problems: PlanProblem[];
  deleted: { repository: string; tag: string }[];
  plan?: PlannedCopy[] | undefined;
  /** Dry run: distinct blobs the destination lacks and their bytes (an upper bound: some may be mounted). */
  planTotals?: { blobs: number; bytes: number } | undefined;
  error?: string | undefined;
}

export interface SyncReport {
  version: 1;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  dryRun: boolean;
  status: 'ok' | 'partial' | 'failed' | 'planned' | 'cancelled';
  rules: RuleReport[];
  totals: { artifacts: ArtifactCounts; blobs: BlobCounts; bytes: number; referrers: number };
}

export function plannedCopy(item: WorkItem): PlannedCopy {
  // Source and destination tags carry the same names; untagged artifacts go by digest.
  const ref = item.tags.length ? `:${item.tags.join(',')}` : `@${item.sourceReference}`;
  return {
    source: `${item.sourceRegistry}/${item.sourceRepository}${ref}`,
    destination: `${item.destinationRegistry}/${item.destinationRepository}${ref}`,
    tags: item.tags,
    kind: item.kind,
  };
}

export function summarize(rules: RuleReport[], startedAt: Date, dryRun: boolean, cancelled = false): SyncReport {
  const finished = new Date();
  const totals = {
    artifacts: { planned: 0, copied: 0, present: 0, skipped: 0, failed: 0 },
    blobs: { uploaded: 0, mounted: 0, skipped: 0 },
    bytes: 0,
    referrers: 0,
  };
  for (const r of rules) {
    for (const k of Object.keys(totals.artifacts) as (keyof ArtifactCounts)[]) totals.artifacts[k] += r.artifacts[k];
    for (const k of Object.keys(totals.blobs) as (keyof BlobCounts)[]) totals.blobs[k] += r.blobs[k];
    totals.bytes += r.bytes;
    totals.referrers += r.referrers;
  }
  const status: SyncReport['status'] = cancelled
    ? 'cancelled'
    : dryRun
      ? 'planned'
      : rules.some((r) => r.status === 'failed')
        ? rules.every((r) => r.status === 'failed')
          ? 'failed'
          : 'partial'
        : rules.some((r) => r.status === 'partial')
          ? 'partial'
          : 'ok';
  return {
    version: 1,
    startedAt: startedAt.toISOString(),
    finishedAt: finished.toISOString(),
    durationMs: finished.getTime() - startedAt.getTime(),
    dryRun,
    status,
    rules,
    totals,
  };
}

export function formatTextReport(report: SyncReport): string {
  const lines: string[] = [];
  for (const r of report.rules) {
    const a = r.artifacts;
    lines.push(`rule ${r.name} (${r.source} -> ${r.destination}): ${r.status}`);
    if (r.error) lines.push(`  error: ${r.error}`);
    if (report.dryRun) {
      for (const p of r.plan ?? []) {
        const extra = p.error ? ` (${p.error})` : p.blobs ? ` (${p.blobs} blob(s), ${formatBytes(p.bytes ?? 0)})` : '';
        lines.push(`  ${p.action ? `${p.action.padEnd(8)} ` : ''}${p.source} -> ${p.destination}${extra}`);
      }
      const t = r.planTotals;
      lines.push(`  ${a.planned} artifact(s) planned${t ? `; ${t.blobs} blob(s) to move, ${formatBytes(t.bytes)} at most` : ''}`);
    } else {
      lines.push(
        `  artifacts: ${a.copied} copied, ${a.present} already present, ${a.skipped} skipped, ${a.failed} failed` +
          (r.referrers ? `; ${r.referrers} referrer(s)` : ''),
      );
      lines.push(`  blobs: ${r.blobs.uploaded} uploaded, ${r.blobs.mounted} mounted, ${r.blobs.skipped} skipped; ${formatBytes(r.bytes)} sent in ${(r.durationMs / 1000).toFixed(1)} s`);
      for (const d of r.deleted) lines.push(`  deleted ${d.repository}:${d.tag}`);
    }
    for (const p of r.problems) lines.push(`  problem: ${p.sourceRepository}${p.destinationRepository ? ` -> ${p.destinationRepository}` : ''}: ${p.message}`);
    for (const i of r.items) {
      if (i.status === 'failed') lines.push(`  FAILED ${i.source} -> ${i.destination}: ${i.reason}`);
      else if (i.status === 'skipped') lines.push(`  skipped ${i.source}: ${i.reason}`);
      else if (i.destinationDigest) lines.push(`  note ${i.source}: destination digest ${i.destinationDigest} differs from source ${i.digest}`);
    }
  }
  const t = report.totals;
  lines.push(
    report.dryRun
      ? `dry run: ${t.artifacts.planned} artifact(s) planned, nothing copied`
      : `total: ${t.artifacts.copied} copied, ${t.artifacts.present} present, ${t.artifacts.skipped} skipped, ${t.artifacts.failed} failed; ${formatBytes(t.bytes)} in ${(report.durationMs / 1000).toFixed(1)} s (${report.status})`,
  );
  return `${lines.join('\n')}\n`;
}

// The sync report: one JSON document for `--output json`, a table-like text for humans. This module
// owns its assembly: a rule's report starts with `startRuleReport`, takes its counts from the rule's
// RuleStats in `completeRuleReport`, and `summarize` adds the rules up.
import { formatBytes } from '../config/units.js';
import type { PlanProblem, WorkItem } from '../plan/types.js';
import type { ArtifactResult, BlobCounts, RuleStats } from '../transfer/stats.js';

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
  /** Bytes the run planned to move, as far as it learnt them (listing sizes, manifests read); absent when none. */
  bytesPlanned?: number | undefined;
  durationMs: number;
  /**
   * A sample of the results, bounded whatever the catalog size: every failure up to 1000, the other
   * results up to 200; `itemsOmitted` counts what was left out, `artifactLog` has them all.
   */
  items: ArtifactResult[];
  itemsOmitted?: { failed: number; other: number } | undefined;
  /** JSON Lines file in the state directory with one line per artifact of this run. */
  artifactLog?: string | undefined;
  /** Plan problems, the first 1000; `problemsOmitted` counts the rest. */
  problems: PlanProblem[];
  problemsOmitted?: number | undefined;
  deleted: { repository: string; tag: string }[];
  /** Dry run: the first 1000 planned copies; `planOmitted` counts the rest (the totals count all). */
  plan?: PlannedCopy[] | undefined;
  planOmitted?: number | undefined;
  /** Requests each registry received during this rule's run, by kind (when the request layer counts them). */
  requests?: Record<string, Record<string, number>> | undefined;
  /** Cooperating workers (PostgreSQL state): the shared run this report covers whole, and who wrote it. */
  run?: { id: number; worker: string; workers: number } | undefined;
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

/** A rule's report before anything ran: status ok, every count 0; `items` and `blobs` are the stats' own. */
export function startRuleReport(rule: { name: string; source: string; destination: string }, stats: RuleStats): RuleReport {
  return {
    name: rule.name,
    source: rule.source,
    destination: rule.destination,
    status: 'ok',
    artifacts: { planned: 0, copied: 0, present: 0, skipped: 0, failed: 0 },
    blobs: stats.blobs,
    referrers: 0,
    bytes: 0,
    durationMs: 0,
    items: stats.artifacts,
    problems: [],
    deleted: [],
  };
}

/**
 * Fills a rule's counts from its stats once its copies ended: plan problems count as failed artifacts;
 * the status is cancelled (stopped or aborted), partial (something failed) or ok.
 */
export function completeRuleReport(report: RuleReport, stats: RuleStats, opts: { cancelled: boolean; startedMs: number; problems?: number | undefined }): RuleReport {
  report.artifacts.copied = stats.count('copied');
  report.artifacts.present = stats.count('present');
  report.artifacts.skipped = stats.count('skipped');
  // `problems` counts every plan problem (the report lists only the first ones).
  report.artifacts.failed = stats.count('failed') + (opts.problems ?? report.problems.length);
  report.bytes = stats.bytes;
  if (stats.bytesPlanned > 0) report.bytesPlanned = stats.bytesPlanned;
  report.referrers = stats.referrers;
  if (stats.omitted.failed || stats.omitted.other) report.itemsOmitted = { ...stats.omitted };
  report.status = opts.cancelled ? 'cancelled' : report.artifacts.failed ? 'partial' : 'ok';
  report.durationMs = Date.now() - opts.startedMs;
  return report;
}

/** A dry run's rule report: the inspected copies, their totals, and the deleteRemote deletions a sync would make. */
export function completePlannedReport(
  report: RuleReport,
  rule: { source: string; destination: string },
  inspection: { copies: PlannedCopy[]; omitted?: number | undefined; blobs: number; bytes: number },
  deletions: readonly { repository: string; tag: string; sourceRepository?: string | undefined; sourceTag?: string | undefined }[],
): RuleReport {
  report.plan = inspection.copies;
  if (inspection.omitted) report.planOmitted = inspection.omitted;
  report.planTotals = { blobs: inspection.blobs, bytes: inspection.bytes };
  for (const d of deletions) {
    if (report.plan.length >= PLAN_LISTED) {
      report.planOmitted = (report.planOmitted ?? 0) + 1;
      continue;
    }
    report.plan.push({ source: `${rule.source}/${d.sourceRepository}:${d.sourceTag}`, destination: `${rule.destination}/${d.repository}:${d.tag}`, tags: [d.tag], action: 'delete' });
  }
  report.status = 'planned';
  return report;
}

/** Planned copies (and deletions) a dry-run report lists; the totals count every one. */
export const PLAN_LISTED = 1000;

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
      if (r.planOmitted) lines.push(`  ... and ${r.planOmitted} more planned cop${r.planOmitted === 1 ? 'y' : 'ies'} (not listed)`);
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
    if (r.problemsOmitted) lines.push(`  ... and ${r.problemsOmitted} more problem(s)`);
    for (const i of r.items) {
      if (i.status === 'failed') lines.push(`  FAILED ${i.source} -> ${i.destination}: ${i.reason}`);
      else if (i.status === 'skipped') lines.push(`  skipped ${i.source}: ${i.reason}`);
      else if (i.destinationDigest) lines.push(`  note ${i.source}: destination digest ${i.destinationDigest} differs from source ${i.digest}`);
    }
    const om = r.itemsOmitted;
    if (om && (om.failed || om.other)) lines.push(`  ... ${om.failed ? `${om.failed} more failure(s)` : ''}${om.failed && om.other ? ' and ' : ''}${om.other ? `${om.other} more result(s)` : ''} not shown${r.artifactLog ? ` (every artifact: ${r.artifactLog})` : ''}`);
    else if (r.artifactLog && !report.dryRun) lines.push(`  every artifact: ${r.artifactLog}`);
    if (r.requests) {
      for (const [registry, kinds] of Object.entries(r.requests)) {
        const n = Object.values(kinds).reduce((x, y) => x + y, 0);
        lines.push(`  requests to ${registry}: ${n} (${Object.entries(kinds).map(([k, v]) => `${k} ${v}`).join(', ')})`);
      }
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

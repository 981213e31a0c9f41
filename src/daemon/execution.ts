// One execution of one rule, as the API shows it and the history stores it.
import type { DeleteRequest, DeletionResult } from '../engine/delete-remote.js';
import type { ArtifactCounts } from '../engine/report.js';
import type { SourceArtifact } from '../plan/types.js';
import type { ArtifactResult, BlobCounts } from '../transfer/stats.js';

export type ExecutionStatus = 'queued' | 'running' | 'ok' | 'partial' | 'failed' | 'cancelled' | 'interrupted';

export const FINISHED: ReadonlySet<ExecutionStatus> = new Set(['ok', 'partial', 'failed', 'cancelled', 'interrupted']);

export type TriggerInfo =
  | { type: 'manual'; at: string }
  | { type: 'schedule'; at: string; schedule: string; timezone?: string | undefined }
  | { type: 'event'; at: string; event: string; operator?: string | undefined; repository?: string | undefined }
  | { type: 'resume'; at: string; of: number };

// An artifact deleted at the source (Harbor DELETE_ARTIFACT / DELETE_CHART) for rules with deleteRemote,
// and what became of it: defined with the deletion logic (engine/delete-remote.ts).
export type { DeleteRequest, DeletionResult } from '../engine/delete-remote.js';

/** What a run does: the whole rule (`full`), or only some artifacts (webhooks), plus deletions. */
export interface RunRequest {
  full: boolean;
  artifacts: SourceArtifact[];
  deletions: DeleteRequest[];
}

export interface Execution {
  id: number;
  rule: string;
  /** What started it; more than one when triggers arrived while it was queued (they merge). */
  triggers: TriggerInfo[];
  /** Triggers merged in but no longer listed (a burst: `triggers` keeps the first and the newest). */
  droppedTriggers?: number | undefined;
  status: ExecutionStatus;
  queuedAt: string;
  startedAt?: string | undefined;
  finishedAt?: string | undefined;
  durationMs?: number | undefined;
  artifacts: ArtifactCounts;
  blobs: BlobCounts;
  bytes: number;
  /** Bytes the run planned to move (as far as it learnt them: listing sizes, manifests read); see LiveRun. */
  bytesPlanned?: number | undefined;
  /** Human-readable problems: the rule's error, plan problems, failed artifacts and deletions. */
  errors: string[];
  /**
   * Artifact results, bounded as the sync report's: every failure up to 1000, the others up to 200;
   * `itemsOmitted` counts the rest and `artifactLog` (JSON Lines in the state directory) has them all.
   */
  items: ArtifactResult[];
  itemsOmitted?: { failed: number; other: number } | undefined;
  artifactLog?: string | undefined;
  deletions: DeletionResult[];
  request: RunRequest;
  /** Set on an interrupted execution once a later one has picked its work up. */
  resumedBy?: number | undefined;
  /** The daemon replica that runs it (replicas on one PostgreSQL state; absent on SQLite). */
  replica?: string | undefined;
}

/** The list view: everything but the artifact results and the request. */
export type ExecutionSummary = Omit<Execution, 'items' | 'request' | 'deletions'> & {
  trigger: TriggerInfo['type'];
  errorCount: number;
  artifactsRequested?: number | undefined;
  deletionsRequested?: number | undefined;
};

const MAX_SUMMARY_ERRORS = 10;

export function summarize(e: Execution): ExecutionSummary {
  const { items: _items, request, deletions: _deletions, errors, ...rest } = e;
  return {
    ...rest,
    trigger: e.triggers[0]?.type ?? 'manual',
    errors: errors.slice(0, MAX_SUMMARY_ERRORS),
    errorCount: errors.length,
    ...(request.full ? {} : { artifactsRequested: request.artifacts.length, deletionsRequested: request.deletions.length }),
  };
}

export function emptyExecution(id: number, rule: string, trigger: TriggerInfo, request: RunRequest, now: Date): Execution {
  return {
    id,
    rule,
    triggers: [trigger],
    status: 'queued',
    queuedAt: now.toISOString(),
    artifacts: { planned: 0, copied: 0, present: 0, skipped: 0, failed: 0 },
    blobs: { uploaded: 0, mounted: 0, skipped: 0 },
    bytes: 0,
    errors: [],
    items: [],
    deletions: [],
    request,
  };
}

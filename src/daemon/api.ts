// The JSON API under /api (documented in docs/api.md), plus /healthz, /readyz and /metrics.
import { formatBytes, parseBandwidth } from '../config/units.js';
import type { FerryConfig, RuleConfig } from '../config/schema.js';
import type { Execution, ExecutionStatus, ExecutionSummary, RunRequest, TriggerInfo } from './execution.js';
import { FINISHED, summarize } from './execution.js';
import type { History } from './history.js';
import type { Metrics } from './metrics.js';
import type { Readiness } from './readiness.js';
import type { LiveRun, Runner, TriggerResult } from './runner.js';
import type { Leadership } from './leadership.js';
import type { Scheduler } from './scheduler.js';
import type { IncomingMessage } from 'node:http';
import { HttpError, type Route, checkAccess, readJson, sendJson, sendText } from './server.js';

/** What the routes need from the daemon. */
export interface DaemonView {
  config(): FerryConfig;
  readonly runner: Runner;
  readonly history: History;
  readonly scheduler: Scheduler;
  readonly metrics: Metrics;
  readonly readiness: Readiness;
  readonly startedAt: Date;
  bandwidth(): number;
  setBandwidth(bytesPerSecond: number): void;
  /** Starts (or queues) a run; rejects with HttpError 503 while shutting down. */
  trigger(rule: string, trigger: TriggerInfo, request: RunRequest): Promise<TriggerResult>;
  /** Who runs the schedules (replicas on one PostgreSQL state elect one). */
  readonly leadership: Leadership;
}

export interface RuleView {
  name: string;
  source: string;
  destination: string;
  enabled: boolean;
  trigger: RuleConfig['trigger'];
  deleteRemote: boolean;
  nextRun?: string | undefined;
  state: 'idle' | 'running' | 'queued';
  running?: number | undefined;
  queued?: number | undefined;
  lastExecution?: ExecutionSummary | undefined;
}

/** A follow-up waiting for its rule's run to end. */
export interface QueuedView {
  id: number;
  rule: string;
  queuedAt: string;
  /** Triggers merged into it (listed and dropped). */
  triggers: number;
  /** What started it first. */
  trigger: TriggerInfo['type'];
  full: boolean;
  artifactsRequested: number;
  deletionsRequested: number;
}

export interface StatusView {
  /** Every time in this view and on the status page is UTC (ISO 8601, "Z"). */
  timeZone: 'UTC';
  startedAt: string;
  /** This daemon process (replicas on one PostgreSQL state tell each other apart by it). */
  replica: string;
  /** Whether this daemon runs the schedules: always alone; one of the replicas on a shared state. */
  leader: boolean;
  /** The state is shared with other replicas (PostgreSQL): lists show their executions too. */
  sharedState: boolean;
  bandwidth: { bytesPerSecond: number; display: string };
  rules: RuleView[];
  live: LiveRun[];
  queued: QueuedView[];
  recent: ExecutionSummary[];
}

const STATUSES = new Set<ExecutionStatus>(['queued', 'running', 'ok', 'partial', 'failed', 'cancelled', 'interrupted']);

export function displayBandwidth(bytesPerSecond: number): string {
  if (!bytesPerSecond) return 'unlimited';
  const bits = bytesPerSecond * 8;
  const units: [number, string][] = [
    [1e9, 'Gbps'],
    [1e6, 'Mbps'],
    [1e3, 'kbps'],
  ];
  for (const [f, u] of units) if (bits >= f) return `${+(bits / f).toFixed(2)} ${u} (${formatBytes(bytesPerSecond)}/s)`;
  return `${bits} bps`;
}

export function ruleViews(d: DaemonView): RuleView[] {
  const recent = d.history.list();
  return d.config().rules.map((rule) => {
    const state = d.runner.state(rule.name);
    const last = recent.find((e) => e.rule === rule.name && e.status !== 'queued' && e.status !== 'running');
    return {
      name: rule.name,
      source: rule.source,
      destination: rule.destination,
      enabled: rule.enabled,
      trigger: rule.trigger,
      deleteRemote: rule.deleteRemote,
      nextRun: d.scheduler.nextRun(rule.name)?.toISOString(),
      state: state.running !== undefined ? 'running' : state.queued !== undefined ? 'queued' : 'idle',
      running: state.running,
      queued: state.queued,
      lastExecution: last ? summarize(last) : undefined,
    };
  });
}

export function statusView(d: DaemonView, recentCount = 20): StatusView {
  return {
    timeZone: 'UTC',
    startedAt: d.startedAt.toISOString(),
    replica: d.leadership.replica,
    leader: d.leadership.leader,
    sharedState: d.leadership.shared,
    bandwidth: { bytesPerSecond: d.bandwidth(), display: displayBandwidth(d.bandwidth()) },
    rules: ruleViews(d),
    live: d.runner.live(),
    queued: d.runner.queuedRuns().map((e) => ({
      id: e.id,
      rule: e.rule,
      queuedAt: e.queuedAt,
      triggers: e.triggers.length + (e.droppedTriggers ?? 0),
      trigger: e.triggers[0]?.type ?? 'manual',
      full: e.request.full,
      artifactsRequested: e.request.artifacts.length,
      deletionsRequested: e.request.deletions.length,
    })),
    recent: d.history.list().slice(0, recentCount).map(summarize),
  };
}

/** Whether the request would pass the API's token check (without answering it). */
function mayReadApi(req: IncomingMessage, token: string | undefined): boolean {
  try {
    checkAccess(req, 'token', token);
    return true;
  } catch {
    return false;
  }
}

function executionId(raw: string): number {
  if (!/^\d{1,15}$/.test(raw)) throw new HttpError(404, `no execution ${raw}`);
  return Number(raw);
}

export function apiRoutes(d: DaemonView): Route[] {
  return [
    {
      method: 'GET',
      path: /^\/healthz$/,
      access: 'open',
      handler: ({ res }) => sendJson(res, 200, { status: 'ok' }),
    },
    {
      method: 'GET',
      path: /^\/readyz$/,
      access: 'open',
      handler: async ({ req, res }) => {
        const report = await d.readiness.get();
        // Registry errors name internal hosts and TLS/DNS details: only callers the API admits see them.
        const detailed = mayReadApi(req, d.config().daemon?.token);
        sendJson(res, report.ready ? 200 : 503, detailed ? report : { ready: report.ready, checkedAt: report.checkedAt });
      },
    },
    {
      method: 'GET',
      path: /^\/metrics$/,
      access: 'token',
      handler: async ({ res }) => {
        const { contentType, body } = await d.metrics.render();
        sendText(res, 200, contentType, body);
      },
    },
    {
      method: 'GET',
      path: /^\/api\/rules$/,
      access: 'token',
      handler: ({ res }) => sendJson(res, 200, { rules: ruleViews(d) }),
    },
    {
      method: 'POST',
      path: /^\/api\/rules\/([^/]+)\/run$/,
      access: 'token',
      handler: async ({ res, params }) => {
        const name = params[0]!;
        const rule = d.config().rules.find((r) => r.name === name);
        if (!rule) throw new HttpError(404, `no rule named ${JSON.stringify(name)}`);
        if (!rule.enabled) throw new HttpError(409, `rule ${name} is disabled (enabled: false)`);
        const result = await d.trigger(name, { type: 'manual', at: new Date().toISOString() }, { full: true, artifacts: [], deletions: [] });
        sendJson(res, 202, { execution: summarize(result.execution), queued: result.queued, merged: result.merged }, { location: `/api/executions/${result.execution.id}` });
      },
    },
    {
      method: 'GET',
      path: /^\/api\/executions$/,
      access: 'token',
      handler: async ({ res, url }) => {
        const rule = url.searchParams.get('rule');
        const status = url.searchParams.get('status');
        if (status && !STATUSES.has(status as ExecutionStatus)) throw new HttpError(400, `status must be one of ${[...STATUSES].join(', ')}`);
        const limitRaw = url.searchParams.get('limit');
        const limit = limitRaw === null ? 50 : Number(limitRaw);
        if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new HttpError(400, 'limit must be an integer from 1 to 1000');
        // Shared state: every replica's executions, read from the database.
        const found = await d.history.query({ rule: rule ?? undefined, status: status ?? undefined, limit });
        sendJson(res, 200, { total: found.total, executions: found.executions.map(summarize) });
      },
    },
    {
      method: 'GET',
      path: /^\/api\/executions\/([^/]+)$/,
      access: 'token',
      handler: async ({ res, params }) => {
        const id = executionId(params[0]!);
        const e: Execution | undefined = d.runner.current(id) ?? (await d.history.get(id));
        if (!e) throw new HttpError(404, `no execution ${id}`);
        sendJson(res, 200, { ...e, trigger: e.triggers[0]?.type ?? 'manual' });
      },
    },
    {
      method: 'POST',
      path: /^\/api\/executions\/([^/]+)\/cancel$/,
      access: 'token',
      handler: async ({ res, params }) => {
        const id = executionId(params[0]!);
        const outcome = d.runner.cancel(id);
        if (outcome === 'unknown') {
          // Shared state: another replica may run it; only that replica can stop it.
          const elsewhere = d.leadership.shared ? await d.history.get(id) : undefined;
          if (elsewhere && !FINISHED.has(elsewhere.status)) throw new HttpError(409, `execution ${id} runs on replica ${elsewhere.replica ?? '(unknown)'}: cancel it through that replica`);
          if (elsewhere) throw new HttpError(409, `execution ${id} has already finished`);
          throw new HttpError(404, `no execution ${id}`);
        }
        if (outcome === 'finished') throw new HttpError(409, `execution ${id} has already finished`);
        sendJson(res, outcome === 'cancelling' ? 202 : 200, { id, status: outcome });
      },
    },
    {
      method: 'GET',
      path: /^\/api\/bandwidth$/,
      access: 'token',
      handler: ({ res }) => sendJson(res, 200, { bandwidth: d.bandwidth(), display: displayBandwidth(d.bandwidth()) }),
    },
    {
      method: 'PUT',
      path: /^\/api\/bandwidth$/,
      access: 'token',
      handler: async ({ req, res }) => {
        const body = await readJson(req, 4096);
        const raw = (body as { bandwidth?: unknown } | undefined)?.bandwidth;
        const parsed = typeof raw === 'string' || typeof raw === 'number' ? parseBandwidth(raw) : null;
        if (parsed === null) throw new HttpError(400, 'expected {"bandwidth": "100Mbps"} (also "25MB/s", a number of bytes per second, or 0 for unlimited)');
        d.setBandwidth(parsed);
        sendJson(res, 200, { bandwidth: d.bandwidth(), display: displayBandwidth(d.bandwidth()) });
      },
    },
    {
      method: 'GET',
      path: /^\/api\/status$/,
      access: 'token',
      handler: ({ res }) => sendJson(res, 200, statusView(d)),
    },
  ];
}

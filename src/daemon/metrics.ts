// Prometheus metrics (prom-client) in a registry of the daemon's own, every name prefixed `ferry_`.
// Fed by the engines' transfer events and by the runner; read at GET /metrics.
import type { EventEmitter } from 'node:events';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { TransferEvents } from '../transfer/stats.js';
import type { Execution } from './execution.js';

/** Finished statuses of an execution (the `status` label of runs_total and run_duration). */
const RUN_STATUSES = ['ok', 'partial', 'failed', 'cancelled', 'interrupted'] as const;
const DELETION_STATUSES = ['deleted', 'kept', 'absent', 'failed'] as const;

export class Metrics {
  readonly registry = new Registry();
  private readonly bytes: Counter<'rule'>;
  private readonly blobs: Counter<'rule' | 'outcome'>;
  private readonly artifacts: Counter<'rule' | 'status'>;
  private readonly runs: Counter<'rule' | 'status'>;
  private readonly durations: Histogram<'rule' | 'status'>;
  private readonly lastSuccess: Gauge<'rule'>;
  private readonly inFlight: Gauge;
  private readonly runsInProgress: Gauge<'rule'>;
  private readonly retries: Counter<'registry'>;
  private readonly bandwidth: Gauge;
  private readonly webhooks: Counter<'type' | 'outcome'>;
  private readonly deletions: Counter<'rule' | 'status'>;
  private readonly reloads: Counter<'result'>;
  private readonly leader: Gauge;
  /** Rules whose last-success gauge is set (from the history or by a run of this process). */
  private readonly successSeen = new Set<string>();
  private readonly running = new Set<string>();

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (opts.defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'ferry_' });
    this.bytes = new Counter({ name: 'ferry_transferred_bytes_total', help: 'Blob bytes sent to destinations', labelNames: ['rule'], registers });
    this.blobs = new Counter({ name: 'ferry_blobs_total', help: 'Blobs by outcome: uploaded (copied), mounted (cross-repository mount), skipped (already there)', labelNames: ['rule', 'outcome'], registers });
    this.artifacts = new Counter({ name: 'ferry_artifacts_total', help: 'Artifacts by outcome: copied, present, skipped, failed', labelNames: ['rule', 'status'], registers });
    this.runs = new Counter({ name: 'ferry_runs_total', help: 'Finished rule runs by status', labelNames: ['rule', 'status'], registers });
    this.durations = new Histogram({
      name: 'ferry_run_duration_seconds',
      help: 'Duration of rule runs',
      labelNames: ['rule', 'status'],
      buckets: [0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600],
      registers,
    });
    this.lastSuccess = new Gauge({ name: 'ferry_last_success_timestamp_seconds', help: 'When a run of the rule last finished without failures (unix seconds)', labelNames: ['rule'], registers });
    this.inFlight = new Gauge({ name: 'ferry_transfers_in_flight', help: 'Blob copies in progress', registers });
    this.runsInProgress = new Gauge({ name: 'ferry_runs_in_progress', help: 'Rule runs in progress (0 or 1 per rule)', labelNames: ['rule'], registers });
    this.retries = new Counter({ name: 'ferry_retries_total', help: 'Registry requests retried', labelNames: ['registry'], registers });
    this.bandwidth = new Gauge({ name: 'ferry_bandwidth_limit_bytes_per_second', help: 'Current process bandwidth cap in bytes per second (0 = unlimited)', registers });
    this.webhooks = new Counter({ name: 'ferry_webhook_events_total', help: 'Harbor webhook requests by event type and outcome', labelNames: ['type', 'outcome'], registers });
    this.deletions = new Counter({ name: 'ferry_remote_deletions_total', help: 'Destination deletions for artifacts deleted at the source (deleteRemote)', labelNames: ['rule', 'status'], registers });
    this.reloads = new Counter({ name: 'ferry_config_reloads_total', help: 'Config reloads (SIGHUP) by result', labelNames: ['result'], registers });
    this.leader = new Gauge({ name: 'ferry_daemon_leader', help: 'Whether this daemon runs the schedules (1: the leader among the replicas on one state.url; always 1 without one)', registers });
  }

  /**
   * Shows every rule's series from the start (at 0), so dashboards and alerts see them before a run.
   * `lastSuccess` tells when a rule last ended ok before this process (from the history), so the
   * gauge survives restarts; a rule that never succeeded shows 0. Values set in this process stay.
   */
  declareRules(rules: string[], lastSuccess: (rule: string) => Date | undefined = () => undefined): void {
    for (const rule of rules) {
      this.bytes.inc({ rule }, 0);
      for (const outcome of ['uploaded', 'mounted', 'skipped']) this.blobs.inc({ rule, outcome }, 0);
      for (const status of ['copied', 'present', 'skipped', 'failed']) this.artifacts.inc({ rule, status }, 0);
      for (const status of RUN_STATUSES) {
        this.runs.inc({ rule, status }, 0);
        this.durations.zero({ rule, status });
      }
      for (const status of DELETION_STATUSES) this.deletions.inc({ rule, status }, 0);
      if (!this.successSeen.has(rule)) {
        const at = lastSuccess(rule);
        this.lastSuccess.set({ rule }, at ? Math.floor(at.getTime() / 1000) : 0);
        this.successSeen.add(rule);
      }
      if (!this.running.has(rule)) this.runsInProgress.set({ rule }, 0);
    }
  }

  subscribe(events: EventEmitter<TransferEvents>): void {
    events.on('bytes', (n, rule) => this.bytes.inc({ rule }, n));
    events.on('blob', (outcome, rule) => this.blobs.inc({ rule, outcome }));
    events.on('artifact', (result, rule) => this.artifacts.inc({ rule, status: result.status }));
    events.on('blobStart', () => this.inFlight.inc());
    events.on('blobEnd', () => this.inFlight.dec());
    events.on('retry', (registry) => this.retries.inc({ registry }));
  }

  runStarted(e: Execution): void {
    this.running.add(e.rule);
    this.runsInProgress.set({ rule: e.rule }, 1);
  }

  runFinished(e: Execution): void {
    this.running.delete(e.rule);
    this.runsInProgress.set({ rule: e.rule }, 0);
    this.runs.inc({ rule: e.rule, status: e.status });
    if (e.durationMs !== undefined) this.durations.observe({ rule: e.rule, status: e.status }, e.durationMs / 1000);
    if (e.status === 'ok') this.successSeen.add(e.rule);
    if (e.status === 'ok') this.lastSuccess.set({ rule: e.rule }, Math.floor(Date.parse(e.finishedAt ?? new Date().toISOString()) / 1000));
    for (const d of e.deletions) this.deletions.inc({ rule: e.rule, status: d.status });
  }

  setBandwidth(bytesPerSecond: number): void {
    this.bandwidth.set(bytesPerSecond);
  }

  setLeader(leader: boolean): void {
    this.leader.set(leader ? 1 : 0);
  }

  webhook(type: string, outcome: 'accepted' | 'ignored' | 'unmatched' | 'unauthorized' | 'malformed'): void {
    this.webhooks.inc({ type, outcome });
  }

  reload(result: 'ok' | 'rejected'): void {
    this.reloads.inc({ result });
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

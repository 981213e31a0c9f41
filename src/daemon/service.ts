// The daemon: wires the engines, runner, scheduler, history, metrics and HTTP server together, and
// owns start-up (resuming interrupted runs), config reload and graceful shutdown.
import { EventEmitter } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FerryConfig } from '../config/schema.js';
import { Engine } from '../engine/engine.js';
import { type Logger, silentLogger } from '../log.js';
import { openState } from '../state/index.js';
import { PgLeadership } from '../state/pg-leader.js';
import type { StateStore } from '../state/types.js';
import type { TransferEvents } from '../transfer/stats.js';
import { type DaemonView, apiRoutes } from './api.js';
import { type Clock, systemClock } from './clock.js';
import { type EngineFactory, EnginePool } from './engines.js';
import type { Execution, RunRequest, TriggerInfo } from './execution.js';
import { History } from './history.js';
import { type Leadership, SoleLeadership, newReplicaId } from './leadership.js';
import { Metrics } from './metrics.js';
import { Readiness } from './readiness.js';
import { Runner, type TriggerResult, addTrigger, mergeRequests } from './runner.js';
import { Scheduler, schedulesOf } from './scheduler.js';
import { HttpError, createHttpServer } from './server.js';
import { type ListenAddress, checkDaemonConfig } from './settings.js';
import { statusPageRoutes } from './status-page.js';
import { webhookRoute } from './webhook-route.js';

export interface DaemonOptions {
  config: FerryConfig;
  /** Overrides transfer.stateDir (the state database), also for reloaded configs. */
  stateDir?: string | undefined;
  logger?: Logger | undefined;
  /** Time source of the scheduler (tests pass a fake one). */
  clock?: Clock | undefined;
  /** Builds engines (tests pass fakes); default: a real Engine on the config. */
  createEngine?: EngineFactory | undefined;
  /** Also export Node.js process metrics (ferry_process_*, ferry_nodejs_*). */
  defaultMetrics?: boolean | undefined;
  /** How long /readyz reuses a registry check (ms). */
  readyCacheMs?: number | undefined;
  /** This process's replica id (default hostname-pid-random). */
  replica?: string | undefined;
  /**
   * Replicas on one PostgreSQL state: how often a non-leader tries for leadership, the leader checks
   * its connection and looks for runs of replicas that died (ms, default 5000).
   */
  leaderRetryMs?: number | undefined;
}

const DEFAULT_LEADER_RETRY_MS = 5000;

function withStateDir(config: FerryConfig, stateDir: string | undefined): FerryConfig {
  return stateDir ? { ...config, transfer: { ...config.transfer, stateDir } } : config;
}

export class Daemon implements DaemonView {
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly history: History;
  readonly runner: Runner;
  readonly scheduler: Scheduler;
  readonly readiness: Readiness;
  readonly startedAt = new Date();
  private readonly engines: EnginePool;
  private readonly events = new EventEmitter<TransferEvents>();
  /** One state for the daemon's history and all its engines (they come and go with reloads). */
  readonly state: StateStore;
  /** Whether this daemon runs the schedules (always, unless replicas share a PostgreSQL state). */
  readonly leadership: Leadership;
  private readonly server: Server;
  private orphanTimer: NodeJS.Timeout | undefined;
  private adopting: Promise<void> | undefined;
  private listenAddress: ListenAddress;
  private stopping = false;
  private started = false;

  constructor(private readonly opts: DaemonOptions) {
    this.logger = opts.logger ?? silentLogger;
    const config = withStateDir(opts.config, opts.stateDir);
    // Throws DaemonConfigError (a non-loopback listen without a token, a bad schedule).
    const { settings, listen } = checkDaemonConfig(config);
    this.listenAddress = listen;
    this.metrics = new Metrics({ defaultMetrics: opts.defaultMetrics });
    this.metrics.subscribe(this.events);
    // Takes the state directory's lock: a second daemon or sync on it is refused (StateLockedError).
    this.state = openState({ stateDir: config.transfer.stateDir, url: config.state?.url, logger: this.logger });
    const factory: EngineFactory = opts.createEngine ?? ((cfg, events) => new Engine(cfg, { logger: this.logger, events, state: this.state }));
    this.engines = new EnginePool(config, factory, this.events, this.logger);
    const replica = opts.replica ?? newReplicaId();
    const url = config.state?.url;
    const shared = this.state.info.kind === 'postgres' && url !== undefined;
    this.history = new History(this.state, settings.historyLimit, this.logger, { shared, replica });
    this.leadership = shared
      ? new PgLeadership(url, { replica, retryMs: opts.leaderRetryMs ?? DEFAULT_LEADER_RETRY_MS, logger: this.logger, onChange: (leader) => this.onLeadership(leader) })
      : new SoleLeadership(replica, (leader) => this.onLeadership(leader));
    this.runner = new Runner(this.engines, this.history, this.logger, {
      onStart: (e) => this.metrics.runStarted(e),
      onFinish: (e) => this.metrics.runFinished(e),
    });
    this.events.on('bytes', (n, rule) => this.runner.onBytes(n, rule));
    this.events.on('planned', (rule, artifacts) => this.runner.onPlanned(rule, artifacts));
    this.events.on('plannedBytes', (rule, bytes, artifacts) => this.runner.onPlannedBytes(rule, bytes, artifacts));
    this.events.on('bytesSkipped', (n, rule) => this.runner.onBytesSkipped(n, rule));
    this.events.on('blob', (outcome, rule) => this.runner.onBlob(outcome, rule));
    this.events.on('blobStart', (digest, size, rule) => this.runner.onBlobStart(digest, size, rule));
    this.events.on('blobEnd', (digest, rule) => this.runner.onBlobEnd(digest, rule));
    this.events.on('artifact', (result, rule) => this.runner.onArtifact(result, rule));
    this.scheduler = new Scheduler(
      (rule, info) => {
        this.trigger(rule, { type: 'schedule', at: info.at.toISOString(), schedule: info.schedule, timezone: info.timezone }, { full: true, artifacts: [], deletions: [] }).catch((err: unknown) =>
          this.logger.warn({ rule, err: (err as Error).message }, 'scheduled run not started'),
        );
      },
      this.logger,
      opts.clock ?? systemClock,
    );
    this.readiness = new Readiness(() => this.engines.engine, opts.readyCacheMs);
    this.server = createHttpServer({
      routes: [webhookRoute(this), ...apiRoutes(this), ...statusPageRoutes(this)],
      token: () => this.config().daemon?.token,
      logger: this.logger,
    });
  }

  config(): FerryConfig {
    return this.engines.config;
  }

  bandwidth(): number {
    return this.engines.bandwidth;
  }

  setBandwidth(bytesPerSecond: number): void {
    this.engines.setBandwidth(bytesPerSecond);
    this.metrics.setBandwidth(bytesPerSecond);
    this.logger.info({ bandwidth: bytesPerSecond }, 'bandwidth cap changed');
  }

  /** The base URL the daemon answers on (after start). */
  get url(): string {
    const addr = this.server.address() as AddressInfo | null;
    if (!addr) throw new Error('the daemon is not listening');
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    return `http://${host}:${addr.port}`;
  }

  /**
   * Starts (or queues, or merges) a run. Synchronous up to the runner unless the history is shared:
   * then the new execution's id comes from the database first.
   */
  async trigger(rule: string, trigger: TriggerInfo, request: RunRequest): Promise<TriggerResult> {
    if (this.stopping) throw new HttpError(503, 'the daemon is shutting down');
    let id: number | undefined;
    if (this.history.shared && !this.runner.hasFollowUp(rule)) {
      try {
        id = await this.history.allocateId();
      } catch (err) {
        throw new HttpError(503, `cannot start a run: ${(err as Error).message}`);
      }
      if (this.stopping) throw new HttpError(503, 'the daemon is shutting down');
    }
    return this.runner.trigger(rule, trigger, request, id);
  }

  /** Whether this daemon runs the schedules now. */
  get leader(): boolean {
    return this.leadership.leader;
  }

  /** Listens, arms the schedules, and runs again what a previous process left unfinished. */
  async start(): Promise<void> {
    if (this.started) throw new Error('already started');
    this.started = true;
    await this.history.load(this.config().transfer.stateDir);
    // Shared: unfinished runs in the database are other replicas'; the leader takes over those of
    // replicas that died (adoptOrphans). Alone, everything unfinished was this daemon's.
    const interrupted = this.history.shared ? [] : this.history.markInterrupted('the daemon stopped while this run was in progress');
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.once('error', onError);
      this.server.listen(this.listenAddress.port, this.listenAddress.host, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
    this.server.on('error', (err) => this.logger.error({ err: err.message }, 'HTTP server error'));
    this.applyConfig(this.config());
    this.logger.info({ url: this.url, rules: this.config().rules.length, replica: this.leadership.replica, state: this.state.info.kind }, 'ferry daemon listening');
    if (interrupted.length) this.logger.warn({ executions: interrupted.map((e) => e.id) }, 'previous process stopped during runs: marked interrupted');
    if (!this.history.shared) await this.resumeInterrupted(this.history.list());
    await this.leadership.start();
    if (this.history.shared) {
      this.orphanTimer = setInterval(() => {
        if (this.leadership.leader) void this.adoptOrphans();
      }, this.opts.leaderRetryMs ?? DEFAULT_LEADER_RETRY_MS);
      this.orphanTimer.unref();
    }
    // Start-up reachability check: logged, never fatal (registries come and go; /readyz reports it).
    void this.readiness.get().then((r) => {
      if (!r.ready) this.logger.warn({ registries: r.registries }, 'some registries are not reachable');
    });
  }

  /**
   * Replaces the config (SIGHUP). A config the daemon cannot use is rejected and the old one kept;
   * the reason is logged and returned. daemon.listen changes need a restart.
   */
  reload(next: FerryConfig): { ok: true } | { ok: false; error: string } {
    const config = withStateDir(next, this.opts.stateDir);
    try {
      const { settings, listen } = checkDaemonConfig(config);
      if (listen.host !== this.listenAddress.host || (listen.port !== this.listenAddress.port && this.listenAddress.port !== 0)) {
        this.logger.warn({ listen: settings.listen }, 'daemon.listen changed: takes effect at the next restart');
      }
      if (config.transfer.stateDir !== this.config().transfer.stateDir) {
        this.logger.warn({ stateDir: config.transfer.stateDir }, 'transfer.stateDir changed: takes effect at the next restart');
        config.transfer = { ...config.transfer, stateDir: this.config().transfer.stateDir };
      }
      this.history.setLimit(settings.historyLimit);
    } catch (err) {
      this.metrics.reload('rejected');
      this.logger.error({ err: (err as Error).message }, 'config reload rejected; keeping the running config');
      return { ok: false, error: (err as Error).message };
    }
    this.engines.replace(config);
    this.runner.forgetRules(new Set(config.rules.map((r) => r.name)));
    this.applyConfig(config);
    this.readiness.invalidate();
    this.metrics.reload('ok');
    this.logger.info({ rules: config.rules.length }, 'config reloaded');
    return { ok: true };
  }

  /**
   * Graceful stop: no new triggers, runs get `graceMs` (default transfer.gracePeriod) to finish, then
   * are aborted and marked interrupted (they run again at the next start).
   */
  async stop(graceMs = this.config().transfer.gracePeriod * 1000): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.scheduler.stop();
    if (this.orphanTimer) clearInterval(this.orphanTimer);
    // Step down at once: another replica takes the schedules over while this one drains its runs.
    const steppedDown = this.leadership.stop();
    this.logger.info({ running: this.runner.running, graceMs }, 'stopping');
    await this.runner.shutdown(graceMs);
    await steppedDown;
    await this.adopting;
    await this.history.flush();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    await this.engines.close();
    await this.state.close();
    this.logger.info('stopped');
  }

  /** A second signal: abort every run now (stop() then finishes quickly). */
  abortNow(): void {
    this.runner.abortAll();
  }

  private applyConfig(config: FerryConfig): void {
    this.scheduler.update(this.leadership.leader ? schedulesOf(config) : []);
    // The last success of each rule survives restarts: the history has it (newest first).
    const lastOk = new Map<string, Date>();
    for (const e of this.history.list()) if (e.status === 'ok' && e.finishedAt && !lastOk.has(e.rule)) lastOk.set(e.rule, new Date(e.finishedAt));
    this.metrics.declareRules(
      config.rules.map((r) => r.name),
      (rule) => lastOk.get(rule),
    );
    this.metrics.setBandwidth(this.engines.bandwidth);
    const settings = config.daemon;
    if (!settings?.webhookAuth && config.rules.some((r) => r.enabled && r.trigger === 'event')) {
      this.logger.warn('event-triggered rules but no daemon.webhookAuth: set it and the same "Auth Header" in Harbor\'s webhook policy');
    }
  }

  private onLeadership(leader: boolean): void {
    this.metrics.setLeader(leader);
    if (this.stopping && leader) return;
    // Only the leader runs the schedules; the others still run what they are asked.
    this.scheduler.update(leader && !this.stopping ? schedulesOf(this.config()) : []);
    if (!this.leadership.shared) return;
    if (leader) this.logger.info({ replica: this.leadership.replica }, 'this replica is the leader: it runs the schedules');
    else this.logger.warn({ replica: this.leadership.replica }, 'this replica is no longer the leader: schedules stopped here');
    if (leader) void this.adoptOrphans();
  }

  /**
   * The leader's sweep: runs of replicas that died (queued, running, or interrupted and not resumed)
   * are marked interrupted here and run again, as a single daemon does at its start. A replica counts
   * as dead when two sweeps in a row found its alive lock free (not one: a replica reconnecting to the
   * database is briefly without it).
   */
  private adoptOrphans(): Promise<void> {
    this.adopting ??= (async () => {
      try {
        const dead: Execution[] = [];
        const suspects = new Set<string>();
        for (const e of await this.history.foreign()) {
          const owner = e.replica ?? '(unknown)';
          if (await this.leadership.isAlive(owner)) continue;
          suspects.add(owner);
          if (this.suspects.has(owner)) dead.push(await this.history.whole(e));
        }
        this.suspects = suspects;
        if (!dead.length || this.stopping || !this.leadership.leader) return;
        for (const e of dead) this.history.adopt(e, `replica ${e.replica ?? '(unknown)'} stopped while this run was in progress`);
        this.logger.warn({ executions: dead.map((e) => e.id), replicas: [...new Set(dead.map((e) => e.replica))] }, 'runs of replicas that are gone: taken over by the leader');
        await this.resumeInterrupted(dead);
      } catch (err) {
        this.logger.warn({ err: (err as Error).message }, 'could not look for runs of replicas that are gone');
      } finally {
        this.adopting = undefined;
      }
    })();
    return this.adopting;
  }

  /** Replicas whose alive lock the previous sweep found free. */
  private suspects = new Set<string>();

  private async resumeInterrupted(candidates: Execution[]): Promise<void> {
    const byRule = new Map<string, Execution[]>();
    for (const e of candidates) {
      if (e.status !== 'interrupted' || e.resumedBy !== undefined) continue;
      byRule.set(e.rule, [...(byRule.get(e.rule) ?? []), e]);
    }
    for (const [rule, list] of byRule) {
      const cfg = this.config().rules.find((r) => r.name === rule);
      if (!cfg?.enabled) {
        this.logger.warn({ rule, executions: list.map((e) => e.id) }, 'interrupted runs of a rule that is gone or disabled: not resumed');
        continue;
      }
      // One run picks up everything the rule had unfinished; oldest first, so later requests win when they merge.
      const full = await Promise.all(list.sort((a, b) => a.id - b.id).map(async (light) => (await this.history.get(light.id)) ?? light));
      const request = full.reduce<RunRequest>((acc, e) => mergeRequests(acc, e.request ?? { full: true, artifacts: [], deletions: [] }), { full: false, artifacts: [], deletions: [] });
      const at = new Date().toISOString();
      const result = await this.trigger(rule, { type: 'resume', at, of: full[0]!.id }, request);
      for (const e of full.slice(1)) addTrigger(result.execution, { type: 'resume', at, of: e.id });
      this.history.save(result.execution);
      for (const e of full) {
        e.resumedBy = result.execution.id;
        this.history.save(e);
      }
      this.logger.info({ rule, interrupted: full.map((e) => e.id), execution: result.execution.id }, 'resuming interrupted runs');
    }
  }
}

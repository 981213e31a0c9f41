// The daemon: wires the engines, runner, scheduler, history, metrics and HTTP server together, and
// owns start-up (resuming interrupted runs), config reload and graceful shutdown.
import { EventEmitter } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FerryConfig } from '../config/schema.js';
import { Engine } from '../engine/engine.js';
import { type Logger, silentLogger } from '../log.js';
import { openState } from '../state/index.js';
import type { StateStore } from '../state/types.js';
import type { TransferEvents } from '../transfer/stats.js';
import { type DaemonView, apiRoutes } from './api.js';
import { type Clock, systemClock } from './clock.js';
import { type EngineFactory, EnginePool } from './engines.js';
import type { Execution, RunRequest, TriggerInfo } from './execution.js';
import { History } from './history.js';
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
}

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
  private readonly server: Server;
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
    this.history = new History(this.state, settings.historyLimit, this.logger);
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
        try {
          this.trigger(rule, { type: 'schedule', at: info.at.toISOString(), schedule: info.schedule, timezone: info.timezone }, { full: true, artifacts: [], deletions: [] });
        } catch (err) {
          this.logger.warn({ rule, err: (err as Error).message }, 'scheduled run not started');
        }
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

  trigger(rule: string, trigger: TriggerInfo, request: RunRequest): TriggerResult {
    if (this.stopping) throw new HttpError(503, 'the daemon is shutting down');
    return this.runner.trigger(rule, trigger, request);
  }

  /** Listens, arms the schedules, and runs again what a previous process left unfinished. */
  async start(): Promise<void> {
    if (this.started) throw new Error('already started');
    this.started = true;
    await this.history.load(this.config().transfer.stateDir);
    const interrupted = this.history.markInterrupted('the daemon stopped while this run was in progress');
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
    this.logger.info({ url: this.url, rules: this.config().rules.length }, 'ferry daemon listening');
    if (interrupted.length) this.logger.warn({ executions: interrupted.map((e) => e.id) }, 'previous process stopped during runs: marked interrupted');
    await this.resumeInterrupted();
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
    this.logger.info({ running: this.runner.running, graceMs }, 'stopping');
    await this.runner.shutdown(graceMs);
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
    this.scheduler.update(schedulesOf(config));
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

  private async resumeInterrupted(): Promise<void> {
    const byRule = new Map<string, Execution[]>();
    for (const e of this.history.list()) {
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
      const result = this.runner.trigger(rule, { type: 'resume', at, of: full[0]!.id }, request);
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

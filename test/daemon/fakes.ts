// Test doubles for the daemon: a fake clock for schedules, a fake engine whose runs the test releases
// (or aborts) at will, and a small HTTP client that can send any Host/Origin header.
import type { EventEmitter } from 'node:events';
import { request } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/load.js';
import type { FerryConfig, RuleConfig } from '../../src/config/schema.js';
import type { SyncOptions } from '../../src/engine/engine.js';
import type { RuleReport, SyncReport } from '../../src/engine/report.js';
import type { Clock } from '../../src/daemon/clock.js';
import type { EngineLike } from '../../src/daemon/engines.js';
import type { SourceArtifact } from '../../src/plan/types.js';
import type { TransferEvents } from '../../src/transfer/stats.js';

export class FakeClock implements Clock {
  private t: number;
  private seq = 0;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();

  constructor(start: Date | string) {
    this.t = new Date(start).getTime();
  }

  now(): number {
    return this.t;
  }

  setTimer(fn: () => void, ms: number): number {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return id;
  }

  clearTimer(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  /** Moves time forward, firing due timers in order (timers armed by them included). */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.timers) if (entry[1].at <= end && (!next || entry[1].at < next[1].at)) next = entry;
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = Math.max(this.t, next[1].at);
      next[1].fn();
    }
    this.t = end;
  }

  get pending(): number {
    return this.timers.size;
  }
}

export interface FakeRun {
  rule: string;
  opts: SyncOptions;
  artifacts: SourceArtifact[] | undefined;
  /** Ends the run with this report fragment (default: ok, nothing copied). */
  finish(partial?: Partial<RuleReport>): void;
  fail(message: string): void;
}

/**
 * An engine whose sync() waits until the test calls finish() on the run (or the signal aborts it).
 * `autoFinish` ends every run at once.
 */
export class FakeEngine implements EngineLike {
  readonly runs: FakeRun[] = [];
  readonly bandwidths: number[] = [];
  closed = false;
  autoFinish = false;
  private waiters: ((run: FakeRun) => void)[] = [];

  constructor(
    readonly config: FerryConfig,
    readonly events: EventEmitter<TransferEvents>,
  ) {}

  state = { knownManifest: async () => undefined } as unknown as EngineLike['state'];

  async sync(opts: SyncOptions = {}): Promise<SyncReport> {
    const rule = opts.rules![0]!;
    const ruleCfg = this.config.rules.find((r) => r.name === rule) as RuleConfig;
    const returned = opts.artifacts?.(ruleCfg);
    // The daemon may hand an async iterable (event artifacts checked one by one): collect it as the engine would.
    let given: SourceArtifact[] | undefined;
    if (Array.isArray(returned)) given = returned;
    else if (returned) {
      given = [];
      for await (const a of returned as AsyncIterable<SourceArtifact>) given.push(a);
    }
    let settle!: (r: RuleReport) => void;
    const done = new Promise<RuleReport>((resolve) => {
      settle = resolve;
    });
    const base = (status: RuleReport['status']): RuleReport => ({
      name: rule,
      source: ruleCfg.source,
      destination: ruleCfg.destination,
      status,
      artifacts: { planned: 0, copied: 0, present: 0, skipped: 0, failed: 0 },
      blobs: { uploaded: 0, mounted: 0, skipped: 0 },
      referrers: 0,
      bytes: 0,
      durationMs: 0,
      items: [],
      problems: [],
      deleted: [],
    });
    const run: FakeRun = {
      rule,
      opts,
      artifacts: given,
      finish: (partial = {}) => settle({ ...base('ok'), ...partial }),
      fail: (message) => settle({ ...base('failed'), error: message }),
    };
    opts.signal?.addEventListener('abort', () => settle(base('cancelled')), { once: true });
    this.runs.push(run);
    for (const w of this.waiters.splice(0)) w(run);
    if (this.autoFinish) run.finish();
    const report = await done;
    return {
      version: 1,
      startedAt: new Date().toISOString(),
      finishedAt: new Date().toISOString(),
      durationMs: 0,
      dryRun: false,
      status: report.status,
      rules: [report],
      totals: { artifacts: report.artifacts, blobs: report.blobs, bytes: report.bytes, referrers: 0 },
    };
  }

  /** Resolves with the next run to start (or the n-th run, when it already started). */
  nextRun(index = this.runs.length): Promise<FakeRun> {
    if (this.runs[index]) return Promise.resolve(this.runs[index]!);
    return new Promise((resolve) => {
      const check = (): void => {
        if (this.runs[index]) resolve(this.runs[index]!);
        else this.waiters.push(check);
      };
      this.waiters.push(check);
    });
  }

  plan = (async () => ({ rule: '', items: [], problems: [], deletions: [] })) as unknown as EngineLike['plan'];
  provider = (() => {
    throw new Error('FakeEngine has no providers');
  }) as unknown as EngineLike['provider'];

  /** Times the pool dropped the per-run caches (no run in flight). */
  cacheResets = 0;
  resetRunCaches(): void {
    this.cacheResets++;
  }

  setBandwidth(n: number): void {
    this.bandwidths.push(n);
  }

  preflight = (async () => undefined) as unknown as EngineLike['preflight'];

  async close(): Promise<void> {
    this.closed = true;
  }
}

/** A factory that remembers the engines it made (the latest is the current one). */
export function fakeEngines(): { engines: FakeEngine[]; factory: (c: FerryConfig, e: EventEmitter<TransferEvents>) => FakeEngine; current: () => FakeEngine } {
  const engines: FakeEngine[] = [];
  return {
    engines,
    factory: (c, e) => {
      const engine = new FakeEngine(c, e);
      engines.push(engine);
      return engine;
    },
    current: () => engines[engines.length - 1]!,
  };
}

export function tempStateDir(): string {
  return mkdtempSync(join(tmpdir(), 'ferry-daemon-test-'));
}

/** A config with two plain registries and the given rules (source src, destination dst by default). */
export function daemonConfig(rules: Array<Record<string, unknown> & { name: string }>, daemon: Record<string, unknown> = {}, stateDir = tempStateDir()): FerryConfig {
  return parseConfig({
    registries: { src: { url: 'http://127.0.0.1:1' }, dst: { url: 'http://127.0.0.1:2' } },
    transfer: { stateDir, gracePeriod: 1 },
    daemon: { listen: '127.0.0.1:0', ...daemon },
    rules: rules.map((r) => ({ source: 'src', destination: 'dst', ...r })),
  });
}

/** daemonConfig's config on the PostgreSQL state at `url` (daemon replicas share it). */
export function sharedDaemonConfig(url: string, rules: Array<Record<string, unknown> & { name: string }>): FerryConfig {
  return parseConfig({
    registries: { src: { url: 'http://127.0.0.1:1' }, dst: { url: 'http://127.0.0.1:2' } },
    transfer: { stateDir: tempStateDir(), gracePeriod: 1 },
    daemon: { listen: '127.0.0.1:0' },
    state: { url },
    rules: rules.map((r) => ({ source: 'src', destination: 'dst', ...r })),
  });
}

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: () => any;
}

/** A request with full control over headers (fetch forbids setting Host). */
export function http(base: string, method: string, path: string, opts: { headers?: Record<string, string>; body?: string | object } = {}): Promise<HttpResult> {
  const url = new URL(path, base);
  const body = opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method, agent: false, headers: { ...(body !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } : {}), ...opts.headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Polls `fn` until it returns a truthy value (or throws after `timeoutMs`). */
export async function eventually<T>(fn: () => T | Promise<T>, timeoutMs = 10_000, what = 'condition'): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A Harbor PUSH_ARTIFACT payload as Harbor sends it (default format). */
export function harborPush(repository: string, tag: string | undefined, dgst: string, host: string) {
  const [namespace, ...rest] = repository.split('/');
  return {
    type: 'PUSH_ARTIFACT',
    occur_at: 1700000000,
    operator: 'admin',
    event_data: {
      resources: [{ digest: dgst, tag: tag ?? dgst, resource_url: `${host}/${repository}${tag ? `:${tag}` : `@${dgst}`}` }],
      repository: { date_created: 1700000000, name: rest.join('/'), namespace, repo_full_name: repository, repo_type: 'private' },
    },
  };
}

// /readyz: the config is loaded and the registries the enabled rules use answer (ping with
// credentials). The answer is cached briefly so probes every few seconds do not hammer registries, and
// concurrent probes share one check.
import type { FerryConfig } from '../config/schema.js';
import { PreflightError } from '../engine/engine.js';
import type { EngineLike } from './engines.js';

export interface ReadinessReport {
  ready: boolean;
  checkedAt: string;
  /** registry name → "ok" or what went wrong */
  registries: Record<string, string>;
}

export class Readiness {
  private cached: { at: number; report: ReadinessReport } | undefined;
  private pending: Promise<ReadinessReport> | undefined;

  constructor(
    private readonly engine: () => EngineLike,
    private readonly cacheMs = 10_000,
  ) {}

  invalidate(): void {
    this.cached = undefined;
  }

  async get(): Promise<ReadinessReport> {
    if (this.cached && Date.now() - this.cached.at < this.cacheMs) return this.cached.report;
    this.pending ??= this.check().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  private async check(): Promise<ReadinessReport> {
    const engine = this.engine();
    const rules = engine.config.rules.filter((r) => r.enabled);
    const registries: Record<string, string> = {};
    for (const name of usedRegistries(engine.config)) registries[name] = 'ok';
    try {
      await engine.preflight(rules);
    } catch (err) {
      if (err instanceof PreflightError) for (const f of err.failures) registries[f.registry] = f.message;
      else for (const name of Object.keys(registries)) registries[name] = (err as Error).message;
    }
    const report = { ready: Object.values(registries).every((v) => v === 'ok'), checkedAt: new Date().toISOString(), registries };
    this.cached = { at: Date.now(), report };
    return report;
  }
}

function usedRegistries(config: FerryConfig): string[] {
  return [...new Set(config.rules.filter((r) => r.enabled).flatMap((r) => [r.source, r.destination]))].sort();
}

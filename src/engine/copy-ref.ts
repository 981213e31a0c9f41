// One artifact from one reference to another (`ferry copy`, the programmatic `Ferry.copy()`): tag or
// digest, every platform of an index, its referrers; the same copier, state, blob queue and
// bandwidth cap as a rule's copies. The callers parse their arguments into ImageRefs (refs.ts).
import type { RegistryConfig } from '../config/schema.js';
import type { WorkItem } from '../plan/types.js';
import { registryKey } from '../providers/index.js';
import { RuleStats } from '../transfer/stats.js';
import { Engine, conversionOptions } from './engine.js';
import { RefError, type ImageRef } from './refs.js';
import { type SyncReport, completeRuleReport, startRuleReport, summarize } from './report.js';

export interface CopyRefOptions {
  signal?: AbortSignal | undefined;
  /** false: leave an existing destination tag alone (default true). */
  override?: boolean | undefined;
  /**
   * The registries the references name (resolveRef's map: the engine's plus ad-hoc hosts). Those the
   * engine does not know are reached through a short-lived engine sharing its state, events and
   * bandwidth cap. Default: the engine's registries.
   */
  registries?: Record<string, RegistryConfig> | undefined;
}

/** Copies `from` to `to` (a destination digest reference pushes untagged) and reports it as a one-rule run named "copy". */
export async function copyRef(engine: Engine, from: ImageRef, to: ImageRef, opts: CopyRefOptions = {}): Promise<SyncReport> {
  const registries = opts.registries ?? engine.config.registries;
  for (const ref of [from, to]) {
    if (!registries[ref.registry]) throw new RefError(`unknown registry "${ref.registry}" (defined: ${Object.keys(registries).join(', ') || 'none'})`);
  }
  const adHoc = [from.registry, to.registry].some((name) => !engine.config.registries[name]);
  const eng = adHoc ? new Engine({ ...engine.config, registries }, { logger: engine.logger, state: engine.state, events: engine.events }) : engine;
  if (adHoc) eng.setBandwidth(engine.processBucket.bytesPerSecond);
  try {
    const started = new Date();
    await eng.preflight([{ source: from.registry, destination: to.registry }]);
    eng.events.emit('planned', 'copy', 1);
    const rule = { name: 'copy', source: from.registry, destination: to.registry };
    const stats = new RuleStats(rule.name, eng.events);
    const report = startRuleReport(rule, stats);
    report.artifacts.planned = 1;
    const item: WorkItem = {
      rule: rule.name,
      sourceRegistry: from.registry,
      destinationRegistry: to.registry,
      sourceRepository: from.repository,
      destinationRepository: to.repository,
      sourceReference: from.reference,
      tags: to.reference.includes(':') ? [] : [to.reference],
    };
    const destination = eng.provider(to.registry);
    await eng.artifacts.copy({
      item,
      source: eng.provider(from.registry).client,
      destination: destination.client,
      destinationKey: registryKey(to.registry, destination.config),
      override: opts.override ?? true,
      stats,
      signal: opts.signal,
      prepareDestination: (repo) => destination.prepareDestination(repo),
      ...conversionOptions(destination.config),
    });
    const cancelled = !!opts.signal?.aborted;
    return summarize([completeRuleReport(report, stats, { cancelled, startedMs: started.getTime() })], started, false, cancelled);
  } finally {
    if (adHoc) await eng.close();
  }
}

// `ferry verify`: an audit of the destination against the source, for every artifact the rules select.
// Read-only (GET/HEAD with pull scopes only): for each planned copy it checks
//   - each tag (or, untagged, the digest) is at the destination at the source's digest;
//   - every child manifest of an index is present (HEAD by digest);
//   - every blob (config and layers, of each child) is present (HEAD);
//   - the referrers Ferry would copy are present: cosign's `sha256-<hex>.sig|.att|.sbom` tags at the
//     same digest, and the OCI referrers the source lists (Referrers API or its fallback tag).
// A rule whose destination differs by design (rule `platforms`, swr.convertToDocker) is checked
// against the destination's own tree instead: tags present, and every child and blob they name.
//
// Bounded memory: the plan streams (Engine.planRepositories: one source repository at a time, the
// listing read only as fast as the checks take it, never the rule's whole plan), artifacts are checked
// a few at a time as it yields them; differences go to a callback as they are found and the report
// keeps the first `maxDifferences` of them, counting the rest (`differencesTotal`), like the sync
// report does with failures.
// Where the destination provider has a bulk tag inventory (listTagInventory), tags are looked up in it,
// one destination repository at a time, instead of one HEAD per tag.
import PQueue from 'p-queue';
import type { RuleConfig } from '../config/schema.js';
import type { PlanProblem, WorkItem } from '../plan/types.js';
import type { Provider } from '../providers/types.js';
import type { RegistryClient } from '../registry/client.js';
import { type Descriptor, parseManifest } from '../registry/media-types.js';
import { REFERRER_TAG } from '../transfer/referrers.js';
import type { Engine } from './engine.js';

export type DifferenceKind = 'missing' | 'other digest' | 'child missing' | 'blob missing' | 'referrer missing' | 'not copyable' | 'error';

export interface Difference {
  rule: string;
  /** Source reference: registry/repository:tag (or @digest). */
  source: string;
  /** Destination reference. */
  destination: string;
  what: DifferenceKind;
  /** The digest concerned: the child, blob or referrer missing; the source digest for a tag. */
  digest?: string | undefined;
  /** `other digest`: what the destination tag points at instead. */
  actual?: string | undefined;
  /** More words: the referrer's tag, an error message, the plan problem. */
  detail?: string | undefined;
}

export interface VerifyRuleReport {
  name: string;
  source: string;
  destination: string;
  /** match: nothing differs; differs: something does; failed: the rule could not be checked (listing failed). */
  status: 'match' | 'differs' | 'failed';
  artifacts: { checked: number; matching: number; differing: number };
  /** The first `maxDifferences` differences (all of them are passed to onDifference). */
  differences: Difference[];
  differencesTotal: number;
  /** Differences found beyond the kept ones (differencesTotal - differences.length), when any. */
  differencesOmitted?: number | undefined;
  error?: string | undefined;
}

export interface VerifyReport {
  version: 1;
  kind: 'verify';
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  status: 'match' | 'differs' | 'failed' | 'cancelled';
  rules: VerifyRuleReport[];
  totals: { artifacts: { checked: number; matching: number; differing: number }; differences: number };
}

export interface VerifyOptions {
  signal?: AbortSignal | undefined;
  /** Every difference, as soon as it is found (the CLI prints them as they come). */
  onDifference?: ((d: Difference) => void) | undefined;
  /** Differences kept in the report per rule (default 1000). */
  maxDifferences?: number | undefined;
  /** Artifacts checked at once (default transfer.artifactConcurrency, at most 16). */
  concurrency?: number | undefined;
  repositoryFilter?: ((sourceRepository: string) => boolean) | undefined;
}

/** Small bounded cache: insertion order, oldest dropped first. */
class BoundedCache<V> {
  private readonly map = new Map<string, V>();
  constructor(private readonly limit: number) {}
  get(key: string): V | undefined {
    return this.map.get(key);
  }
  set(key: string, value: V): void {
    if (this.map.size >= this.limit) this.map.delete(this.map.keys().next().value as string);
    this.map.set(key, value);
  }
}

const COSIGN_SUFFIXES = ['sig', 'att', 'sbom'];

/** Verifies the rules one after the other; throws only for what stops everything (preflight). */
export async function verifyRules(engine: Engine, rules: RuleConfig[], opts: VerifyOptions = {}): Promise<VerifyReport> {
  const started = new Date();
  await engine.preflight(rules);
  const reports: VerifyRuleReport[] = [];
  for (const rule of rules) {
    if (opts.signal?.aborted) break;
    reports.push(await verifyRule(engine, rule, opts));
  }
  const finished = new Date();
  const totals = { artifacts: { checked: 0, matching: 0, differing: 0 }, differences: 0 };
  for (const r of reports) {
    totals.artifacts.checked += r.artifacts.checked;
    totals.artifacts.matching += r.artifacts.matching;
    totals.artifacts.differing += r.artifacts.differing;
    totals.differences += r.differencesTotal;
  }
  const status: VerifyReport['status'] = opts.signal?.aborted
    ? 'cancelled'
    : reports.some((r) => r.status === 'failed')
      ? 'failed'
      : reports.some((r) => r.status === 'differs')
        ? 'differs'
        : 'match';
  return { version: 1, kind: 'verify', startedAt: started.toISOString(), finishedAt: finished.toISOString(), durationMs: finished.getTime() - started.getTime(), status, rules: reports, totals };
}

async function verifyRule(engine: Engine, rule: RuleConfig, opts: VerifyOptions): Promise<VerifyRuleReport> {
  const report: VerifyRuleReport = {
    name: rule.name,
    source: rule.source,
    destination: rule.destination,
    status: 'match',
    artifacts: { checked: 0, matching: 0, differing: 0 },
    differences: [],
    differencesTotal: 0,
  };
  const max = opts.maxDifferences ?? 1000;
  const record = (d: Difference) => {
    report.differencesTotal++;
    if (report.differences.length < max) report.differences.push(d);
    else report.differencesOmitted = (report.differencesOmitted ?? 0) + 1;
    opts.onDifference?.(d);
  };
  const concurrency = opts.concurrency ?? Math.min(16, engine.config.transfer.artifactConcurrency);
  const queue = new PQueue({ concurrency });
  const checkOne = async (checker: ArtifactChecker, item: WorkItem): Promise<void> => {
    const found: Difference[] = [];
    try {
      await checker.check(item, (d) => found.push(d));
    } catch (err) {
      found.push({ rule: rule.name, ...refs(item), what: 'error', detail: (err as Error).message });
    }
    report.artifacts.checked++;
    if (found.length) report.artifacts.differing++;
    else report.artifacts.matching++;
    for (const d of found) record(d);
  };
  try {
    const checker = new ArtifactChecker(engine.provider(rule.source), engine.provider(rule.destination), rule);
    for await (const repo of engine.planRepositories(rule, { signal: opts.signal, repositoryFilter: opts.repositoryFilter })) {
      for (const p of repo.problems) recordProblem(rule, p, record);
      report.artifacts.differing += repo.problems.length;
      for (const item of repo.items) {
        if (opts.signal?.aborted) break;
        // Signatures and referrer fallback tags are checked with their subject (as referrers), not twice.
        if (rule.copyReferrers && item.tags.length > 0 && item.tags.every((t) => REFERRER_TAG.test(t))) continue;
        // Bounded: never more than a couple of batches queued ahead of the checks in flight (and the
        // next repository is listed only once this one's checks are nearly all started).
        await queue.onSizeLessThan(concurrency * 2);
        void queue.add(() => checkOne(checker, item));
      }
      if (opts.signal?.aborted) break;
    }
    await queue.onIdle();
    report.status = report.differencesTotal > 0 ? 'differs' : 'match';
  } catch (err) {
    // The listing failed part-way: the checks already started finish before the rule is reported.
    await queue.onIdle();
    report.status = 'failed';
    report.error = (err as Error).message;
  }
  return report;
}

function recordProblem(rule: RuleConfig, p: PlanProblem, record: (d: Difference) => void): void {
  record({
    rule: rule.name,
    source: `${rule.source}/${p.sourceRepository}`,
    destination: `${rule.destination}/${p.destinationRepository ?? '?'}`,
    what: 'not copyable',
    detail: p.message,
  });
}

function refs(item: WorkItem, tag?: string): { source: string; destination: string } {
  const ref = tag !== undefined ? `:${tag}` : item.tags.length ? `:${item.tags.join(',')}` : `@${item.sourceReference}`;
  return { source: `${item.sourceRegistry}/${item.sourceRepository}${ref}`, destination: `${item.destinationRegistry}/${item.destinationRepository}${ref}` };
}

class ArtifactChecker {
  private readonly src: RegistryClient;
  private readonly dst: RegistryClient;
  /** The destination's own tree is checked when Ferry changes what it pushes (platforms, conversion). */
  private readonly rewritten: boolean;
  /** Destination repository → tag → digest, from the bulk inventory (one repository kept at a time). */
  private inventory: { repository: string; tags: Promise<Map<string, string> | undefined> } | undefined;
  private sourceTags: { repository: string; tags: Promise<Set<string>> } | undefined;
  private readonly present = new BoundedCache<Promise<boolean>>(50_000);

  constructor(
    source: Provider,
    private readonly destination: Provider,
    private readonly rule: RuleConfig,
  ) {
    this.src = source.client;
    this.dst = destination.client;
    this.rewritten = rule.platforms.length > 0 || (destination.config.kind === 'swr' && !!destination.config.swr?.convertToDocker);
  }

  async check(item: WorkItem, found: (d: Difference) => void): Promise<void> {
    const diff = (what: DifferenceKind, extra: Partial<Difference> = {}, tag?: string) => found({ rule: this.rule.name, ...refs(item, tag), what, ...extra });
    const repo = item.destinationRepository;
    if (item.chartMuseum) {
      // Converted to an OCI chart at copy time: there is no source manifest to compare with.
      for (const tag of item.tags) if (!(await this.destinationDigest(repo, tag))) diff('missing', {}, tag);
      return;
    }
    const manifest = await this.src.getManifest(item.sourceRepository, item.sourceReference);
    const refsAtDestination = item.tags.length ? item.tags : [manifest.digest];
    let destinationRoot: string | undefined;
    for (const ref of refsAtDestination) {
      const tag = item.tags.length ? ref : undefined;
      const actual = await this.destinationDigest(repo, ref);
      if (!actual) diff('missing', { digest: manifest.digest }, tag);
      else if (actual !== manifest.digest && !this.rewritten) diff('other digest', { digest: manifest.digest, actual }, tag);
      else destinationRoot ??= actual;
    }
    if (this.rewritten) {
      // What Ferry pushed differs from the source by design: the destination's tree must be whole.
      if (destinationRoot) {
        const pushed = await this.dst.getManifest(repo, destinationRoot);
        await this.checkTree(this.dst, repo, pushed.bytes, pushed.mediaType, item, diff);
      }
    } else if (destinationRoot) {
      // Only when the artifact is there at the source's digest: an absent or replaced artifact is one
      // difference, not one per blob.
      await this.checkTree(this.src, item.sourceRepository, manifest.bytes, manifest.mediaType, item, diff);
    }
    if (this.rule.copyReferrers && destinationRoot) await this.checkReferrers(item, manifest.digest, diff);
  }

  /** Walks a manifest tree read from `from`, checking every child and blob at the destination. */
  private async checkTree(from: RegistryClient, fromRepo: string, bytes: Buffer, mediaType: string, item: WorkItem, diff: (what: DifferenceKind, extra?: Partial<Difference>) => void): Promise<void> {
    const repo = item.destinationRepository;
    const parsed = parseManifest(bytes, mediaType);
    if (parsed.kind === 'index') {
      for (const child of parsed.manifests) {
        if (!(await this.manifestPresent(repo, child.digest))) {
          diff('child missing', { digest: child.digest, detail: platformOf(child) });
          continue;
        }
        const m = await from.getManifest(fromRepo, child.digest);
        await this.checkTree(from, fromRepo, m.bytes, m.mediaType || child.mediaType, item, diff);
      }
      return;
    }
    for (const blob of [parsed.config, ...parsed.layers]) {
      if (isForeign(blob)) continue; // non-distributable layers are never pushed
      if (!(await this.blobPresent(repo, blob.digest))) diff('blob missing', { digest: blob.digest, detail: `${blob.size} bytes` });
    }
  }

  private async checkReferrers(item: WorkItem, subject: string, diff: (what: DifferenceKind, extra?: Partial<Difference>) => void): Promise<void> {
    const repo = item.destinationRepository;
    const prefix = subject.replace(':', '-');
    const tags = await this.tagsOfSource(item.sourceRepository);
    for (const suffix of COSIGN_SUFFIXES) {
      const tag = `${prefix}.${suffix}`;
      if (!tags.has(tag)) continue;
      const expected = (await this.src.headManifest(item.sourceRepository, tag))?.digest;
      const actual = await this.destinationDigest(repo, tag);
      if (!actual || (expected && actual !== expected)) diff('referrer missing', { digest: expected, actual, detail: `tag ${tag}${actual ? ' at another digest' : ''}` });
    }
    const listed: Descriptor[] = [];
    const api = await this.src.referrers(item.sourceRepository, subject).catch(() => undefined);
    if (api) listed.push(...indexEntries(api.bytes));
    if (tags.has(prefix)) listed.push(...indexEntries((await this.src.getManifest(item.sourceRepository, prefix)).bytes));
    const seen = new Set<string>();
    for (const d of listed) {
      if (seen.has(d.digest) || d.digest === subject) continue;
      seen.add(d.digest);
      if (!(await this.manifestPresent(repo, d.digest))) diff('referrer missing', { digest: d.digest, detail: d.artifactType ?? d.mediaType });
    }
  }

  /** The digest a destination tag (or digest reference) resolves to, or undefined when absent. */
  private async destinationDigest(repository: string, reference: string): Promise<string | undefined> {
    if (!reference.includes(':') && this.destination.listTagInventory) {
      if (this.inventory?.repository !== repository) this.inventory = { repository, tags: this.loadInventory(repository) };
      const tags = await this.inventory.tags;
      if (tags) return tags.get(reference);
    }
    return (await this.dst.headManifest(repository, reference))?.digest;
  }

  private async loadInventory(repository: string): Promise<Map<string, string> | undefined> {
    try {
      const tags = new Map<string, string>();
      for await (const e of this.destination.listTagInventory!(repository)) tags.set(e.tag, e.digest);
      return tags;
    } catch {
      return undefined; // e.g. the repository does not exist yet: fall back to HEADs (which say 404)
    }
  }

  private async tagsOfSource(repository: string): Promise<Set<string>> {
    if (this.sourceTags?.repository !== repository) {
      this.sourceTags = { repository, tags: this.src.listTags(repository).then((t) => new Set(t)).catch(() => new Set<string>()) };
    }
    return this.sourceTags.tags;
  }

  private manifestPresent(repository: string, digest: string): Promise<boolean> {
    return this.cached(`m ${repository} ${digest}`, async () => !!(await this.dst.headManifest(repository, digest)));
  }

  private blobPresent(repository: string, digest: string): Promise<boolean> {
    return this.cached(`b ${repository} ${digest}`, async () => !!(await this.dst.headBlob(repository, digest, false)));
  }

  private cached(key: string, fn: () => Promise<boolean>): Promise<boolean> {
    let p = this.present.get(key);
    if (!p) {
      p = fn();
      this.present.set(key, p);
      p.catch(() => undefined);
    }
    return p;
  }
}

function platformOf(d: Descriptor): string | undefined {
  const p = (d as Descriptor & { platform?: { os?: string; architecture?: string; variant?: string } }).platform;
  return p ? [p.os, p.architecture, p.variant].filter(Boolean).join('/') : undefined;
}

function isForeign(d: Descriptor): boolean {
  return /\.foreign\.|nondistributable/.test(d.mediaType) && !!(d as Descriptor & { urls?: string[] }).urls?.length;
}

function indexEntries(bytes: Buffer): Descriptor[] {
  try {
    const doc = JSON.parse(bytes.toString('utf8')) as { manifests?: unknown };
    return Array.isArray(doc.manifests) ? (doc.manifests as Descriptor[]).filter((d) => d && typeof d.digest === 'string') : [];
  } catch {
    return [];
  }
}

/** One line per difference, for the text output. */
export function formatDifference(d: Difference): string {
  const what =
    d.what === 'other digest'
      ? `other digest: ${d.actual} instead of ${d.digest}`
      : d.what === 'missing'
        ? 'missing'
        : `${d.what}${d.digest ? ` ${d.digest}` : ''}`;
  return `  DIFF ${d.source} -> ${d.destination}: ${what}${d.detail ? ` (${d.detail})` : ''}`;
}

export function formatVerifyText(report: VerifyReport): string {
  const lines: string[] = [];
  for (const r of report.rules) {
    const a = r.artifacts;
    lines.push(`rule ${r.name} (${r.source} -> ${r.destination}): ${r.status}; ${a.checked} checked, ${a.matching} matching, ${a.differing} differing`);
    if (r.error) lines.push(`  error: ${r.error}`);
  }
  const t = report.totals;
  lines.push(`verify: ${t.artifacts.checked} artifact(s) checked, ${t.artifacts.matching} matching, ${t.artifacts.differing} differing, ${t.differences} difference(s) (${report.status})`);
  return `${lines.join('\n')}\n`;
}

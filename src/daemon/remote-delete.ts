// Deletions at the destination for rules with `deleteRemote: true`, when Harbor reports an artifact
// deleted at the source. The one rule: never delete something Ferry did not put there, nor anything
// the source still has. A destination manifest is deleted only when
//   0. the source confirms the deletion: it answers 404 for the deleted digest (for an event without a
//      digest, for the tag), so a late or replayed DELETE after a re-push keeps the live replica;
//   1. the source artifact passes the rule's filters and maps (same plan as a copy) to that destination
//      repository and tag;
//   2. the destination tag (or digest, for untagged artifacts) resolves to the deleted artifact's digest,
//      or to the digest this rule's history says that artifact became (platform filtering/conversion);
//   3. the resume journal records that Ferry pushed that manifest to that repository.
// Registries delete manifests by digest, so every destination tag pointing at it goes too, as in Harbor,
// where deleting an artifact removes all its tags.
import type { RuleConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import { registryKey } from '../providers/index.js';
import type { DeleteRequest, DeletionResult } from './execution.js';
import type { EngineLike } from './engines.js';
import type { History } from './history.js';

const DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export async function deleteAtDestination(
  engine: EngineLike,
  rule: RuleConfig,
  requests: DeleteRequest[],
  history: History,
  logger: Logger,
  signal?: AbortSignal,
): Promise<DeletionResult[]> {
  const results: DeletionResult[] = [];
  const destination = engine.provider(rule.destination);
  const key = registryKey(rule.destination, destination.config);
  for (const req of requests) {
    if (signal?.aborted) break;
    const source = `${rule.source}/${req.repository}${req.tag ? `:${req.tag}` : ''}${req.digest ? `@${req.digest}` : ''}`;
    try {
      const live = await stillAtSource(engine, rule, req);
      if (live) {
        results.push({ source, digest: req.digest, status: 'kept', reason: live });
        continue;
      }
      const plan = await engine.plan(rule, { artifacts: () => [{ repository: req.repository, digest: req.digest, tags: req.tag ? [req.tag] : [], ...(req.chart ? { kind: 'chart' as const } : {}) }] });
      if (!plan.items.length) {
        results.push({ source, digest: req.digest, status: 'kept', reason: "not selected by the rule's filters" });
        continue;
      }
      for (const item of plan.items) {
        const refs = item.tags.length ? item.tags : req.digest ? [req.digest] : [];
        for (const ref of refs) {
          const target = `${rule.destination}/${item.destinationRepository}${DIGEST.test(ref) ? '@' : ':'}${ref}`;
          const found = await destination.client.headManifest(item.destinationRepository, ref);
          if (!found) {
            results.push({ source, destination: target, status: 'absent', reason: 'not at the destination' });
            continue;
          }
          const ours = await expectedDigests(history, rule, req, found.digest);
          if (!ours.has(found.digest)) {
            results.push({ source, destination: target, digest: found.digest, status: 'kept', reason: `the destination holds ${found.digest}, not the deleted artifact` });
            continue;
          }
          if (!engine.journal.manifest(key, item.destinationRepository, found.digest)) {
            results.push({ source, destination: target, digest: found.digest, status: 'kept', reason: 'Ferry has no record of pushing it (not deleting what it did not put there)' });
            continue;
          }
          await destination.client.deleteManifest(item.destinationRepository, found.digest);
          logger.info({ rule: rule.name, source, destination: target, digest: found.digest }, 'deleted at the destination (deleted at the source)');
          results.push({ source, destination: target, digest: found.digest, status: 'deleted' });
        }
      }
    } catch (err) {
      logger.error({ rule: rule.name, source, err: (err as Error).message }, 'deletion at the destination failed');
      results.push({ source, digest: req.digest, status: 'failed', reason: (err as Error).message });
    }
  }
  return results;
}

/**
 * Why the source contradicts the deletion (it still serves the digest, or the tag), or undefined when it
 * answers 404. ChartMuseum charts live outside the registry API and are not checked here.
 */
async function stillAtSource(engine: EngineLike, rule: RuleConfig, req: DeleteRequest): Promise<string | undefined> {
  if (req.chart) return undefined;
  const reference = req.digest ?? req.tag;
  if (!reference) return undefined;
  const found = await engine.provider(rule.source).client.headManifest(req.repository, reference);
  if (!found) return undefined;
  return req.digest
    ? `the source still has ${req.repository}@${req.digest} (a late or replayed delete event): not deleting a live replica`
    : `the source still has ${req.repository}:${req.tag} (now ${found.digest}): not deleting a live replica`;
}

/**
 * Digests the deleted source artifact may have at the destination: its own, and what this rule's
 * history says it became. The history is read only when the destination digest differs from the
 * source's (a rewritten manifest) or the event carried no digest (ChartMuseum charts).
 */
async function expectedDigests(history: History, rule: RuleConfig, req: DeleteRequest, found: string): Promise<Set<string>> {
  const digests = new Set<string>(req.digest ? [req.digest] : []);
  if (digests.has(found)) return digests;
  const tagged = req.tag ? `${rule.source}/${req.repository}:${req.tag}` : undefined;
  for await (const e of history.withItems(rule.name)) {
    for (const item of e.items) {
      const same = req.digest ? item.digest === req.digest : tagged !== undefined && item.source === tagged;
      if (!same || (item.status !== 'copied' && item.status !== 'present')) continue;
      const d = item.destinationDigest ?? item.digest;
      if (d) digests.add(d);
    }
    if (digests.has(found)) break;
  }
  return digests;
}

// Push order (#15): a repository's artifacts are copied oldest first by the source's push time, so
// that retention rules such as "keep the 10 most recently pushed" choose the same artifacts at the
// destination as at the source (Harbor #17401, #23549: replication reverses the order).
import type { SourceArtifact } from '../providers/types.js';

/** When the source got the artifact: its own push time, else its earliest tag's; undefined when unknown. */
export function artifactPushTime(artifact: SourceArtifact): number | undefined {
  if (artifact.pushedAt) return artifact.pushedAt.getTime();
  const times = Object.values(artifact.tagPushedAt ?? {}).map((d) => d.getTime());
  return times.length ? Math.min(...times) : undefined;
}

/**
 * The entries of one repository ordered oldest first by push time. Stable: entries with equal times
 * keep the listing's order, and entries without a known time keep theirs after the timed ones (a
 * plain registry's listing knows no times and comes back unchanged).
 */
export function orderOldestFirst<T>(entries: readonly T[], artifactOf: (entry: T) => SourceArtifact): T[] {
  const timed = entries.map((entry, index) => ({ entry, index, at: artifactPushTime(artifactOf(entry)) }));
  if (timed.every((t) => t.at === undefined)) return [...entries];
  return timed
    .sort((a, b) => (a.at === undefined ? (b.at === undefined ? a.index - b.index : 1) : b.at === undefined ? -1 : a.at - b.at || a.index - b.index))
    .map((t) => t.entry);
}

// Source listings built from a product's bulk tag inventory (TCR DescribeRepositories + DescribeImages,
// SWR repository and tag listings): digests and push times are known at plan time, so the plan can
// order a repository oldest first and the copy needs no tag resolution; sizes, where the product gives
// them, are the plan's bytes (progress). Tags sharing a digest become
// one artifact. A repository is grouped on its own (its tags, never the catalog, are held).
import { CloudApiError } from './cloud-error.js';
import type { ListOptions, SourceArtifact, TagInventoryEntry } from './types.js';

/** One repository's inventory as artifacts: one per digest, with every tag and its push time. */
export async function artifactsFromInventory(repository: string, entries: AsyncIterable<TagInventoryEntry>): Promise<SourceArtifact[]> {
  const byDigest = new Map<string, SourceArtifact>();
  for await (const e of entries) {
    let artifact = byDigest.get(e.digest);
    if (!artifact) byDigest.set(e.digest, (artifact = { repository, digest: e.digest, tags: [], tagPushedAt: {} }));
    artifact.tags.push(e.tag);
    // The product's image size (TCR Size, SWR size): the progress bars' bytes planned, known at plan time.
    if (e.size !== undefined && e.size >= 0) artifact.size ??= e.size;
    if (e.pushedAt) {
      const at = new Date(e.pushedAt);
      artifact.tagPushedAt![e.tag] = at;
      // The artifact arrived with its first tag.
      if (!artifact.pushedAt || at < artifact.pushedAt) artifact.pushedAt = at;
    }
  }
  for (const a of byDigest.values()) a.tags.sort();
  return [...byDigest.values()];
}

/**
 * Repositories → inventories → artifacts. When the product API refuses the credentials on its first
 * call (keys that may create namespaces but not list), `fallback` lists instead (the registry catalog).
 */
export async function* listThroughInventory(
  repositories: AsyncIterable<string>,
  inventory: (repository: string) => AsyncIterable<TagInventoryEntry>,
  options: ListOptions,
  fallback: () => AsyncIterable<SourceArtifact>,
): AsyncIterable<SourceArtifact> {
  const iterator = repositories[Symbol.asyncIterator]();
  let next: IteratorResult<string>;
  try {
    next = await iterator.next();
  } catch (err) {
    if (err instanceof CloudApiError && err.isAuthFailure) {
      yield* fallback();
      return;
    }
    throw err;
  }
  for (; !next.done; next = await iterator.next()) {
    const repository = next.value;
    options.signal?.throwIfAborted();
    if (options.repositoryMayMatch && !options.repositoryMayMatch(repository)) continue;
    yield* await artifactsFromInventory(repository, inventory(repository));
  }
}

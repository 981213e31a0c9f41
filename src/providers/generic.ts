// A plain OCI Distribution registry (distribution, Zot, Nexus, GitLab, ...): listing through
// /v2/_catalog and tags/list, no namespace management. The other providers extend this one.
import type { RegistryConfig } from '../config/schema.js';
import { pullScope } from '../registry/auth.js';
import type { RegistryClient } from '../registry/client.js';
import { AuthError, RegistryError, UnreachableError, isRepositoryScoped } from '../registry/errors.js';
import { MediaTypes, isValidRepositoryName } from '../registry/media-types.js';
import { cancelUpload, patchChunk, startUpload } from '../registry/upload.js';
import type { CapabilityReport, ListOptions, Provider, SourceArtifact } from './types.js';

export class GenericProvider implements Provider {
  constructor(
    readonly name: string,
    readonly config: RegistryConfig,
    readonly client: RegistryClient,
  ) {}

  async *listArtifacts(options: ListOptions = {}): AsyncIterable<SourceArtifact> {
    for await (const repository of options.repositories ?? this.client.catalog()) {
      if (options.signal?.aborted) return;
      if (options.repositoryMayMatch && !options.repositoryMayMatch(repository)) continue;
      // One repository's trouble is that repository's problem, never the whole listing's.
      if (!isValidRepositoryName(repository)) {
        options.onRepositoryProblem?.(repository, `the catalog lists "${repository}", which is not a valid repository name; skipped`);
        continue;
      }
      let tags: string[];
      try {
        tags = await this.client.listTags(repository);
      } catch (err) {
        if (!(err instanceof RegistryError) || err instanceof UnreachableError || !isRepositoryScoped(err)) throw err;
        options.onRepositoryProblem?.(repository, `tags could not be listed: ${err.message}`);
        continue;
      }
      for (const tag of tags.sort()) yield { repository, tags: [tag] };
    }
  }

  validateDestination(repository: string): string | undefined {
    return isValidRepositoryName(repository) ? undefined : `"${repository}" is not a valid OCI repository name`;
  }

  async prepareDestination(_repository: string): Promise<void> {
    // plain registries create repositories on first push
  }

  async check(opts: CheckOptions = {}): Promise<CapabilityReport> {
    const report: CapabilityReport = { registry: this.name, kind: this.config.kind, url: this.config.url, reachable: false, authenticated: false, features: {} };
    try {
      await this.client.ping();
      report.reachable = true;
      report.authenticated = true;
    } catch (err) {
      report.reachable = !(err instanceof UnreachableError);
      report.error = (err as Error).message;
      return report;
    }
    let sample: string | undefined;
    report.features.catalog = await probe(async () => {
      for await (const repo of this.client.catalog(1)) {
        sample = repo;
        break;
      }
    });
    const repo = opts.probeRepository ?? sample;
    if (repo) {
      report.features.referrers = await probe(async () => {
        const digest = `sha256:${'0'.repeat(64)}`;
        if (await this.client.referrers(repo, digest)) return;
        // A registry with the Referrers API answers 404 NAME_UNKNOWN for a repository it does not
        // hold (go-containerregistry's registry, zot): that 404 says nothing about the API.
        const res = await this.client.send({ method: 'GET', url: this.client.url(`v2/${repo}/referrers/${digest}`), headers: { accept: MediaTypes.ociIndex }, scopes: [pullScope(repo)], repository: repo, kind: 'referrers' });
        const answer = await this.client.failure(res, `referrers of ${digest}`, repo);
        if (answer.code === 'NAME_UNKNOWN') throw new Error(`unknown: repository ${repo} does not exist here (name one that does with --probe-repository)`);
        throw new RegistryError('no referrers API', { registry: this.name, status: 404 });
      });
    }
    if (opts.probeRepository) Object.assign(report.features, await probeUploads(this.client, opts.probeRepository));
    Object.assign(report.features, await this.probeExtra());
    return report;
  }

  /** Product-specific probes for `ferry check` (namespace management); none for a plain registry. */
  protected async probeExtra(): Promise<Record<string, boolean | string>> {
    return {};
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

/**
 * Errors that concern one repository (gone, refused for that one, its name refused): the listing goes
 * on. Anything else (the registry unreachable, credentials refused everywhere) stops it.
 */
/** Runs a probe: true when it works, false when the registry refused, the reason otherwise. */
export async function probe(fn: () => Promise<unknown>): Promise<boolean | string> {
  try {
    await fn();
    return true;
  } catch (err) {
    if (err instanceof AuthError) return `refused (${err.status ?? ''} ${err.code ?? ''})`.trim();
    if (err instanceof RegistryError && (err.status === 404 || err.status === 405)) return false;
    return (err as Error).message;
  }
}

/**
 * Probes whether a repository accepts uploads, cross-repository mounts and chunked uploads, by starting
 * sessions and cancelling them: nothing is committed.
 */
export async function probeUploads(client: RegistryClient, repository: string): Promise<Record<string, boolean | string>> {
  const features: Record<string, boolean | string> = {};
  const digest = `sha256:${'0'.repeat(64)}`;
  features.push = await probe(async () => {
    const s = await startUpload(client, repository);
    if (!s.mounted) await cancelUpload(client, repository, s.location);
  });
  if (features.push !== true) return features;
  features.chunkedUpload = await probe(async () => {
    const s = await startUpload(client, repository);
    if (s.mounted) return;
    try {
      await patchChunk(client, repository, s.location, Buffer.from('ferry'), 0, 5);
    } finally {
      await cancelUpload(client, repository, s.location);
    }
  });
  // A mount of an unknown blob answers 202 (a plain session) where mounts are understood; anything
  // else means the registry rejects the mount parameters.
  features.mount = await probe(async () => {
    const s = await startUpload(client, repository, { digest, from: `${repository}-ferry-probe` });
    if (!s.mounted) await cancelUpload(client, repository, s.location);
  });
  return features;
}

export interface CheckOptions {
  /** A repository where `check` may open (and cancel) upload sessions to probe push features. */
  probeRepository?: string | undefined;
}

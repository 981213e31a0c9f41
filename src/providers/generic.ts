// A plain OCI Distribution registry (distribution, Zot, Nexus, GitLab, ...): listing through
// /v2/_catalog and tags/list, no namespace management. The other providers extend this one.
import type { RegistryConfig } from '../config/schema.js';
import type { SourceArtifact } from '../plan/types.js';
import type { RegistryClient } from '../registry/client.js';
import { AuthError, RegistryError, UnreachableError } from '../registry/errors.js';
import { isValidRepositoryName } from '../registry/media-types.js';
import { startUpload, cancelUpload } from '../registry/upload.js';
import type { CapabilityReport, ListOptions, Provider } from './types.js';

export class GenericProvider implements Provider {
  constructor(
    readonly name: string,
    readonly config: RegistryConfig,
    readonly client: RegistryClient,
  ) {}

  async *listArtifacts(options: ListOptions = {}): AsyncIterable<SourceArtifact> {
    for await (const repository of this.client.catalog()) {
      if (options.signal?.aborted) return;
      if (options.repositoryMayMatch && !options.repositoryMayMatch(repository)) continue;
      const tags = await this.client.listTags(repository);
      for (const tag of tags.sort()) yield { repository, tags: [tag] };
    }
  }

  validateDestination(repository: string): string | undefined {
    return isValidRepositoryName(repository) ? undefined : `"${repository}" is not a valid OCI repository name`;
  }

  async prepareDestination(_repository: string): Promise<void> {
    // plain registries create repositories on first push
  }

  async check(): Promise<CapabilityReport> {
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
    report.features.catalog = await probe(async () => {
      for await (const _ of this.client.catalog(1)) break;
    });
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
 * sessions and cancelling them (nothing is committed).
 */
export async function probeUploads(client: RegistryClient, repository: string): Promise<Record<string, boolean | string>> {
  const features: Record<string, boolean | string> = {};
  features.push = await probe(async () => {
    const s = await startUpload(client, repository);
    if (!s.mounted) await cancelUpload(client, repository, s.location);
  });
  return features;
}

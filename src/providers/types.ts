// What differs per registry product. The registry client (src/registry) knows nothing of Harbor, TCR
// or SWR; a Provider wraps one configured registry and adds the product's listing, login and
// namespace management on top of it.
import type { RegistryConfig } from '../config/schema.js';
import type { SourceArtifact } from '../plan/types.js';
import type { RegistryClient } from '../registry/client.js';
import type { Credentials } from '../registry/auth.js';

export interface ListOptions {
  /** Only repositories that may pass the rule's repository filters (a hint; the plan filters again). */
  repositoryMayMatch?: (repository: string) => boolean;
  /** Charts from ChartMuseum too (Harbor <= 2.7), when the rule's kinds include chart. */
  includeChartMuseum?: boolean;
  signal?: AbortSignal;
}

/**
 * One tag of a repository with the digest it points at, as a product's bulk listing gives it (Harbor's
 * API v2.0 artifacts, TCR's DescribeImages, SWR's tag listing). A rerun compares these digests instead
 * of a manifest HEAD per tag.
 */
export interface TagInventoryEntry {
  tag: string;
  /** Digest of the manifest (or index) the tag points at. */
  digest: string;
  mediaType?: string;
  /** When the artifact was pushed to this registry (ISO 8601), when the product says. */
  pushedAt?: string;
  size?: number;
}

export interface CapabilityReport {
  registry: string;
  kind: RegistryConfig['kind'];
  url: string;
  reachable: boolean;
  authenticated: boolean;
  /** Feature name → true (works), false (refused / missing), or a short explanation. */
  features: Record<string, boolean | string>;
  error?: string;
}

export interface Provider {
  /** The registry's name in the config. */
  readonly name: string;
  readonly config: RegistryConfig;
  /** OCI Distribution client for all content traffic. */
  readonly client: RegistryClient;

  /** Everything the source holds, as artifacts with tags (Harbor: REST API; others: catalog + tags/list). */
  listArtifacts(options?: ListOptions): AsyncIterable<SourceArtifact>;

  /**
   * Plan-time check of a destination repository name against the product's rules (depth, charset,
   * length). Returns a human-readable reason when the name cannot be used, else undefined.
   */
  validateDestination(repository: string): string | undefined;

  /**
   * Makes sure a destination repository can be pushed to: creates the namespace / project /
   * organization when missing. Called before the first push into each namespace; the provider
   * caches the outcome for the run.
   */
  prepareDestination(repository: string): Promise<void>;

  /**
   * `ferry check`: reach, authenticate, probe features. Never throws. With a probe repository it also
   * opens (and cancels) upload sessions there to test push, chunked uploads and mounts.
   */
  check(options?: { probeRepository?: string | undefined }): Promise<CapabilityReport>;

  /**
   * Every tag of one repository with its digest, from the product's bulk listing, in a few requests
   * (source or destination side). Undefined when the product has no such listing: the engine then
   * HEADs per tag. A repository that does not exist yields nothing.
   */
  listTagInventory?(repository: string, opts?: { signal?: AbortSignal }): AsyncIterable<TagInventoryEntry>;

  /** Releases pools and timers. */
  close(): Promise<void>;
}

export type { Credentials };

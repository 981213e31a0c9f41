// What differs per registry product. The registry client (src/registry) knows nothing of Harbor, TCR
// or SWR; a Provider wraps one configured registry and adds the product's listing, login and
// namespace management on top of it.
import type { ArtifactKind, RegistryConfig } from '../config/schema.js';
import type { RegistryClient } from '../registry/client.js';
import type { Credentials } from '../registry/auth.js';

/** One artifact as the source lists it. Plain registries know only tags; Harbor knows digests, labels and times. */
export interface SourceArtifact {
  /** Full source repository path, e.g. "library/nginx" or "a/b/c/img". */
  repository: string;
  /** Manifest digest when the listing knows it (Harbor API); otherwise resolved at transfer time. */
  digest?: string;
  /** Tags pointing at this artifact; empty for an untagged artifact. */
  tags: string[];
  /** Harbor labels on the artifact. */
  labels?: string[];
  /** Known from the listing (Harbor's artifact type), else decided from the manifest at transfer time. */
  kind?: ArtifactKind;
  /** Push time per tag (Harbor tag push_time), used by `filters.latest`. */
  tagPushedAt?: Record<string, Date>;
  /** Push time of the artifact itself (Harbor push_time). */
  pushedAt?: Date;
  /** Bytes of the artifact (manifests and blobs) when the listing says (Harbor's artifact size): the progress totals. */
  size?: number;
  /** The manifest's media type when the listing says (Harbor's manifest_media_type). */
  mediaType?: string;
  /**
   * How many signatures, SBOMs and other referrers refer to it, when the listing knows them all
   * (Harbor >= 2.8 lists every accessory, tag-scheme and OCI subject alike): 0 lets a rerun of an
   * image manifest skip the referrer look-ups at both sides. Undefined: unknown, look them up.
   */
  referrers?: number;
  /** Set for charts that live in a ChartMuseum repository rather than the OCI registry. */
  chartMuseum?: ChartMuseumRef;
}

/** A chart version in a ChartMuseum repository (Harbor <= 2.7), with its download URLs when the listing knows them. */
export interface ChartMuseumRef {
  project: string;
  name: string;
  version: string;
  url?: string;
  provUrl?: string;
}

export interface ListOptions {
  /** Only repositories that may pass the rule's repository filters (a hint; the plan filters again). */
  repositoryMayMatch?: (repository: string) => boolean;
  /** Charts from ChartMuseum too (Harbor <= 2.7), when the rule's kinds include chart. */
  includeChartMuseum?: boolean;
  signal?: AbortSignal;
  /**
   * A repository the listing could not read (deleted between the catalog and its tags, a name the
   * catalog gave that is not a valid repository name, access refused to that one repository): the
   * listing reports it here and goes on with the others; the plan reports it for that repository.
   */
  onRepositoryProblem?: (repository: string, message: string) => void;
  /**
   * List these repositories, in this order, instead of enumerating the registry: a cooperating worker
   * lists only the repositories it leased (issue 12). One that does not exist lists nothing.
   */
  repositories?: AsyncIterable<string> | undefined;
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

  /** Where a ChartMuseum chart version's .tgz is downloaded (Harbor <= 2.7 only; others leave it undefined). */
  chartArchiveUrl?(chart: ChartMuseumRef): URL;

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

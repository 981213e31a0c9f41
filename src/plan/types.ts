// What a source listing yields and what the plan hands to the transfer stage.
import type { ArtifactKind } from '../config/schema.js';

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
  /** Set for charts that live in a ChartMuseum repository rather than the OCI registry. */
  chartMuseum?: { project: string; name: string; version: string; url?: string; provUrl?: string };
}

/** One planned copy: a source artifact and where it goes. */
export interface WorkItem {
  rule: string;
  sourceRegistry: string;
  destinationRegistry: string;
  sourceRepository: string;
  destinationRepository: string;
  /** Digest when known, else the (first) tag: what to fetch from the source. */
  sourceReference: string;
  /** Destination tags to point at the copied manifest; empty = push by digest only (untagged). */
  tags: string[];
  digest?: string;
  kind?: ArtifactKind;
  chartMuseum?: SourceArtifact['chartMuseum'];
}

/** A repository or artifact the plan could not map; reported, the others continue. */
export interface PlanProblem {
  rule: string;
  sourceRepository: string;
  destinationRepository?: string;
  message: string;
}

export interface RulePlan {
  rule: string;
  items: WorkItem[];
  problems: PlanProblem[];
  /**
   * Tags at the destination that this rule put there earlier and that are gone from the source
   * (filled by the engine from the rule's state after a complete listing).
   */
  deletions: { repository: string; tag: string; digest?: string; sourceRepository?: string; sourceTag?: string }[];
  /** Every source "<repository>:<tag>" the listing returned (in scope), when it was a full listing. */
  listed?: Set<string> | undefined;
}

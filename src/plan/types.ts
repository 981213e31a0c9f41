// What a source listing yields and what the plan hands to the transfer stage.
import type { ArtifactKind } from '../config/schema.js';
import type { SourceArtifact } from '../providers/types.js';

// What a source listing yields is the providers' (they produce it); re-exported for the plan's users.
export type { SourceArtifact } from '../providers/types.js';

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
  /** Bytes of the artifact as the listing gives them (Harbor's artifact size), for the progress totals. */
  size?: number;
  /** From the listing (SourceArtifact): the manifest's media type, and how many referrers it has when the listing knows them all. */
  mediaType?: string;
  referrers?: number;
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
  /**
   * Every source repository the listing returned (in scope), when it was a full listing: deleteRemote
   * deletes only after one.
   */
  listedRepositories?: Set<string> | undefined;
}

// Platform filtering (rule `platforms`): copy only some children of an index. The filtered index is a
// new document (same media type, same annotations and other fields, fewer `manifests`), so its digest
// differs from the source's; the copier reports that as ArtifactResult.destinationDigest. With no
// patterns (the default) nothing is rewritten and the index is copied byte for byte.
//
// Matching follows containerd's platform normalization:
//   - os and architecture compare case-insensitively after aliasing (x86_64/x86-64 → amd64,
//     aarch64 → arm64, armhf → arm/v7, armel → arm/v6, i386 → 386);
//   - a missing variant takes the architecture's default: arm64 → v8, arm → v7, amd64 → v1; so
//     `linux/arm64` matches children with variant v8 or none, and `linux/arm64/v8` matches the same;
//     `linux/arm/v6` matches only v6; `linux/amd64` matches amd64 with no variant (or v1), not v2/v3;
//   - os.version and os.features are not compared.
// Children that are not platform-specific stay: those without a platform (nested indexes, artifacts)
// and Docker buildx attestation manifests (`vnd.docker.reference.type: attestation-manifest`) whose
// image child is kept. An index where no platform-specific child matches is skipped.
import { type Descriptor, type ParsedManifest, type Platform, platformString } from '../registry/media-types.js';

export interface PlatformPattern {
  os: string;
  architecture: string;
  variant: string;
  /** As written in the config, for messages. */
  text: string;
}

const PATTERN = /^([A-Za-z0-9._-]+)\/([A-Za-z0-9._-]+)(?:\/([A-Za-z0-9._-]+))?$/;

const ARCH_ALIASES: Record<string, { architecture: string; variant?: string }> = {
  x86_64: { architecture: 'amd64' },
  'x86-64': { architecture: 'amd64' },
  aarch64: { architecture: 'arm64' },
  armhf: { architecture: 'arm', variant: 'v7' },
  armel: { architecture: 'arm', variant: 'v6' },
  i386: { architecture: '386' },
  i686: { architecture: '386' },
};

const DEFAULT_VARIANT: Record<string, string> = { arm64: 'v8', arm: 'v7', amd64: 'v1' };

/** Checks a config value such as "linux/arm64/v8"; returns an error message or undefined. */
export function platformPatternError(text: string): string | undefined {
  return PATTERN.test(text.trim()) ? undefined : `"${text}" is not a platform: expected os/architecture[/variant], e.g. linux/amd64 or linux/arm64/v8`;
}

/** Normalizes os / architecture / variant the way containerd does (see the module header). */
export function normalizePlatform(p: { os?: string | undefined; architecture?: string | undefined; variant?: string | undefined }): { os: string; architecture: string; variant: string } {
  const os = (p.os ?? '').toLowerCase();
  let architecture = (p.architecture ?? '').toLowerCase();
  let variant = (p.variant ?? '').toLowerCase();
  const alias = ARCH_ALIASES[architecture];
  if (alias) {
    architecture = alias.architecture;
    if (!variant && alias.variant) variant = alias.variant;
  }
  if (architecture === 'arm64' && variant === '8') variant = 'v8';
  if (architecture === 'arm' && /^[5-8]$/.test(variant)) variant = `v${variant}`;
  if (!variant) variant = DEFAULT_VARIANT[architecture] ?? '';
  return { os, architecture, variant };
}

export function parsePlatformPattern(text: string): PlatformPattern {
  const m = PATTERN.exec(text.trim());
  if (!m) throw new Error(platformPatternError(text));
  return { ...normalizePlatform({ os: m[1], architecture: m[2], variant: m[3] }), text };
}

export function platformMatches(platform: Platform | undefined, patterns: PlatformPattern[]): boolean {
  if (!platform) return false;
  const p = normalizePlatform(platform);
  return patterns.some((q) => q.os === p.os && q.architecture === p.architecture && q.variant === p.variant);
}

const ATTESTATION_TYPE = 'vnd.docker.reference.type';
const ATTESTATION_SUBJECT = 'vnd.docker.reference.digest';

/** True for entries that describe no runnable platform (buildx's attestation manifests say unknown/unknown). */
function isAttestation(d: Descriptor): boolean {
  return d.annotations?.[ATTESTATION_TYPE] === 'attestation-manifest';
}

export interface PlatformSelection {
  /** The children kept, in their original order. */
  kept: Descriptor[];
  /** The platform-specific children left out. */
  dropped: Descriptor[];
  /** True when at least one child is platform-specific but none of them matched. */
  nothingMatched: boolean;
}

/** Which children of an index the patterns keep (see the module header for the rules). */
export function selectChildren(manifests: Descriptor[], patterns: PlatformPattern[]): PlatformSelection {
  const kept = new Set<string>();
  let platformSpecific = 0;
  let matched = 0;
  for (const d of manifests) {
    if (isAttestation(d)) continue;
    if (!d.platform) {
      kept.add(d.digest);
      continue;
    }
    platformSpecific++;
    if (platformMatches(d.platform, patterns)) {
      matched++;
      kept.add(d.digest);
    }
  }
  for (const d of manifests) {
    if (isAttestation(d) && kept.has(d.annotations?.[ATTESTATION_SUBJECT] ?? '')) kept.add(d.digest);
  }
  return {
    kept: manifests.filter((d) => kept.has(d.digest)),
    dropped: manifests.filter((d) => !kept.has(d.digest)),
    nothingMatched: platformSpecific > 0 && matched === 0,
  };
}

export type PlatformRewrite =
  | { action: 'keep' }
  | { action: 'skip'; reason: string }
  | { action: 'rewrite'; bytes: Buffer; mediaType: string; kept: Descriptor[]; dropped: Descriptor[] };

/**
 * What platform filtering does to one manifest. Image manifests (single-platform images) are kept as
 * they are, whatever their config says: the filter chooses among an index's children, it does not
 * drop single-platform images (and reading their platform would cost a config fetch per image).
 */
export function filterIndex(bytes: Buffer, parsed: ParsedManifest, patterns: PlatformPattern[]): PlatformRewrite {
  if (!patterns.length || parsed.kind !== 'index') return { action: 'keep' };
  const selection = selectChildren(parsed.manifests, patterns);
  if (selection.nothingMatched) {
    const available = [...new Set(parsed.manifests.filter((d) => d.platform && !isAttestation(d)).map((d) => platformString(d.platform)))];
    return { action: 'skip', reason: `no platform of the index (${available.join(', ')}) matches platforms [${patterns.map((p) => p.text).join(', ')}]` };
  }
  if (selection.dropped.length === 0) return { action: 'keep' };
  // Every other field (schemaVersion, mediaType, artifactType, subject, annotations, unknown ones)
  // stays as it was, in its place; the kept descriptors are the source's objects, unchanged.
  const doc = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  const keptDigests = new Set(selection.kept.map((d) => d.digest));
  doc.manifests = (doc.manifests as { digest: string }[]).filter((d) => keptDigests.has(d.digest));
  return {
    action: 'rewrite',
    bytes: Buffer.from(JSON.stringify(doc)),
    mediaType: parsed.mediaType,
    kept: selection.kept,
    dropped: selection.dropped,
  };
}

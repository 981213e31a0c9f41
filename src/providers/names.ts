// Destination name rules per product, checked at plan time so a bad name fails before any byte moves.
// Each validator returns a human-readable reason, or undefined when the name is fine.
//
// Sources:
// - TCR namespace (CreateNamespace docs): 2–30 chars of lowercase letters, digits and the separators
//   ".", "_", "-"; no separator at either end, no two in a row.
// - TCR repository: TCR Enterprise is Harbor-based and accepts multi-level paths under a namespace
//   (Harbor's own tencentcr adapter pushes `ns/a/b`); each level follows the OCI path-component grammar.
//   CreateRepository documents a name (the part after the namespace) shorter than 245 characters.
// - SWR organization (SWR API "Creating an Organization", Huawei and OTC): 1–64 chars, starts with a
//   lowercase letter, ends with a letter or digit; lowercase letters, digits, ".", "_" (at most two in
//   a row) and "-"; separators not next to each other. Note: the docs allow "." although some older
//   regexes (and Ferry's PROTOCOL.md) do not.
// - SWR image name: 1–128 chars; same characters. SWR's current API docs allow "/" inside the image
//   name (org/a/b), but Ferry keeps SWR destinations at exactly two levels by default (older SWR and
//   the console only handle organization/name); pass `{ allowNested: true }` to relax that.
// - Harbor project: lowercase, 1–255 chars, `[a-z0-9]+(?:[._-][a-z0-9]+)*` (Harbor's project API;
//   Harbor 1.x required at least 2 characters).

const TCR_NAMESPACE = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;
const OCI_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const SWR_ORGANIZATION = /^[a-z][a-z0-9]*(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const HARBOR_PROJECT = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;

export function validateTcrNamespace(name: string): string | undefined {
  if (name.length < 2 || name.length > 30) return `TCR namespace "${name}" must be 2–30 characters long (has ${name.length})`;
  if (!TCR_NAMESPACE.test(name)) {
    return `TCR namespace "${name}" may contain only lowercase letters, digits and ".", "_", "-", not at either end and never two separators in a row`;
  }
  return undefined;
}

export function validateTcrRepository(repository: string): string | undefined {
  const slash = repository.indexOf('/');
  if (slash < 0) return `TCR repository "${repository}" needs a namespace: <namespace>/<name>`;
  const nsReason = validateTcrNamespace(repository.slice(0, slash));
  if (nsReason) return `${nsReason} (in repository "${repository}")`;
  const rest = repository.slice(slash + 1);
  if (rest.length === 0 || rest.length > 244) return `TCR repository name "${rest}" (after the namespace) must be 1–244 characters long`;
  const bad = rest.split('/').find((part) => !OCI_COMPONENT.test(part));
  if (bad !== undefined) {
    return `TCR repository "${repository}": path component "${bad}" must be lowercase letters and digits separated by ".", "_", "__" or "-"`;
  }
  return undefined;
}

export interface SwrRepositoryOptions {
  /** Accept organization/a/b (SWR's current API allows "/" in image names). Default false. */
  allowNested?: boolean | undefined;
}

export function validateSwrOrganization(name: string): string | undefined {
  if (name.length < 1 || name.length > 64) return `SWR organization "${name}" must be 1–64 characters long (has ${name.length})`;
  if (!SWR_ORGANIZATION.test(name)) {
    return `SWR organization "${name}" must start with a lowercase letter, end with a letter or digit, and contain only lowercase letters, digits and single ".", "_", "__" or "-" separators`;
  }
  return undefined;
}

export function validateSwrRepository(repository: string, opts: SwrRepositoryOptions = {}): string | undefined {
  const parts = repository.split('/');
  if (parts.length < 2) return `SWR repository "${repository}" needs an organization: <organization>/<name>`;
  if (parts.length > 2 && !opts.allowNested) {
    return `SWR repository "${repository}" has ${parts.length} levels but SWR takes exactly two (<organization>/<name>): set \`flatten: all\` on the rule (or a destinationNamespace with flatten) to shorten it`;
  }
  const orgReason = validateSwrOrganization(parts[0]!);
  if (orgReason) return `${orgReason} (in repository "${repository}")`;
  const name = parts.slice(1).join('/');
  if (name.length < 1 || name.length > 128) return `SWR image name "${name}" must be 1–128 characters long (has ${name.length})`;
  const bad = parts.slice(1).find((part) => !OCI_COMPONENT.test(part));
  if (bad !== undefined) {
    return `SWR image name "${name}": "${bad}" must be lowercase letters and digits separated by ".", "_", "__" or "-"`;
  }
  return undefined;
}

export function validateHarborProject(name: string): string | undefined {
  if (name.length < 1 || name.length > 255) return `Harbor project "${name}" must be 1–255 characters long (has ${name.length})`;
  if (!HARBOR_PROJECT.test(name)) {
    return `Harbor project "${name}" may contain only lowercase letters, digits and single ".", "_" or "-" between them`;
  }
  return undefined;
}

// Destination names: `destinationNamespace` + `flatten` with the meaning of Harbor's replication
// ("Flattening" / dest_namespace_replace_count), then `rename` for what Harbor cannot express.
import type { FlattenLevel } from '../config/schema.js';
import { isValidRepositoryName } from '../registry/media-types.js';

export class MappingError extends Error {
  override name = 'MappingError';
}

export interface MappingRule {
  destinationNamespace?: string | undefined;
  flatten: FlattenLevel;
  rename?: { from: string; to: string }[] | undefined;
}

/**
 * Maps a source repository path to its destination path.
 *
 * With namespace `dev` and source `a/b/c/img`: none → dev/a/b/c/img, 1 → dev/b/c/img, 2 → dev/c/img,
 * 3 → dev/img, all → dev/img. Replacing exactly as many levels as the path has (`2` on
 * `library/nginx`) leaves the bare namespace `dev`, as Harbor does; more levels than that is an error.
 * Without a namespace the numbered levels drop leading components and `all` keeps the last one; a
 * level that would leave nothing is an error.
 */
export function flattenRepository(source: string, rule: Pick<MappingRule, 'destinationNamespace' | 'flatten'>): string {
  const parts = source.split('/');
  const ns = rule.destinationNamespace?.replace(/^\/+|\/+$/g, '') || undefined;
  let drop: number;
  if (rule.flatten === 'none') drop = 0;
  else if (rule.flatten === 'all') drop = parts.length - 1;
  else drop = Number(rule.flatten);

  if (drop > parts.length || (!ns && drop >= parts.length)) {
    throw new MappingError(
      `flatten: ${rule.flatten} removes ${drop} level(s) but "${source}" has only ${parts.length}${ns ? '' : ' and there is no destinationNamespace to stand in'}`,
    );
  }
  const rest = parts.slice(drop);
  return [...(ns ? [ns] : []), ...rest].join('/');
}

/** Compiled `rename` rules: the first rule whose regex matches rewrites the name (JS replace syntax: $1, $<name>). */
export function compileRename(rules: { from: string; to: string }[] | undefined): (name: string) => string {
  const compiled = (rules ?? []).map((r) => ({ re: new RegExp(r.from), to: r.to }));
  return (name) => {
    for (const r of compiled) if (r.re.test(name)) return name.replace(r.re, r.to);
    return name;
  };
}

/** Flattening, then rename, then a check that the result is a valid OCI repository name. */
export function mapRepository(source: string, rule: MappingRule, rename = compileRename(rule.rename)): string {
  const mapped = rename(flattenRepository(source, rule));
  if (!isValidRepositoryName(mapped)) throw new MappingError(`"${mapped}" (from "${source}") is not a valid repository name`);
  return mapped;
}

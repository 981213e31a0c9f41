// Destination names: `destinationNamespace` + `flatten` with the meaning of Harbor's replication
// (src/controller/replication/flow/stage.go, replaceNamespace; `flatten` is the rule's
// dest_namespace_replace_count: none = 0, 1/2/3, all = -1), then `rename` for what Harbor cannot express,
// then a check that the result is a valid OCI repository name.
//
// With namespace `dev`, source `a/b/c/img`:
//   none → dev/a/b/c/img   1 → dev/b/c/img   2 → dev/c/img   3 → dev/img   all → dev/img
// A level removes that many leading components. Removing every component (`2` on `library/nginx`)
// leaves the bare namespace `dev` (as issue 3 specifies; Harbor itself refuses a level that reaches the
// last component); removing more than there are (`3` on `library/nginx`) is a MappingError for that
// repository.
//
// Without a namespace Harbor ignores the level and keeps the source path; Ferry does the same for
// none/1/2/3, and `all` keeps only the last component (issue 3; Harbor would keep the whole path).
//
// rename: [{from, to}] — `from` is a JavaScript regular expression, unanchored (write ^…$ to match the
// whole name), matched against the flattened name; the FIRST rule whose `from` matches rewrites the
// name with String.prototype.replace (first occurrence; `to` may use $1, $<name>, $&, $$) and later rules
// are not consulted, so rules never see each other's output and their order reads as priority.
import type { FlattenLevel } from '../config/schema.js';
import { isValidRepositoryName } from '../registry/media-types.js';

/** A source repository that cannot be mapped (too-deep flattening, invalid result, bad rename rule). */
export class MappingError extends Error {
  override name = 'MappingError';
  constructor(
    message: string,
    /** The source repository, when the error is about one. */
    readonly repository?: string,
  ) {
    super(message);
  }
}

export interface RenameRule {
  from: string;
  to: string;
}

export interface MappingRule {
  destinationNamespace?: string | undefined;
  flatten: FlattenLevel;
  rename?: RenameRule[] | undefined;
}

/** Namespace + flattening only (no rename, no validation). Throws MappingError when the level is too deep. */
export function flattenRepository(source: string, rule: Pick<MappingRule, 'destinationNamespace' | 'flatten'>): string {
  const parts = source.split('/');
  const ns = (rule.destinationNamespace ?? '').replace(/^\/+|\/+$/g, '');
  const last = parts[parts.length - 1]!;
  if (!ns) return rule.flatten === 'all' ? last : source;
  switch (rule.flatten) {
    case 'none':
      return `${ns}/${source}`;
    case 'all':
      return `${ns}/${last}`;
    default: {
      const levels = Number(rule.flatten);
      if (levels > parts.length) {
        throw new MappingError(
          `flatten: ${rule.flatten} removes ${levels} leading level(s) but "${source}" has only ${parts.length}; use a lower level or flatten: all`,
          source,
        );
      }
      return [ns, ...parts.slice(levels)].join('/');
    }
  }
}

const compiledRenames = new WeakMap<RenameRule[], (name: string) => string>();

/** Compiles `rename` (first matching rule wins). Throws MappingError for an invalid regex. */
export function compileRename(rules: RenameRule[] | undefined): (name: string) => string {
  if (!rules?.length) return (name) => name;
  const cached = compiledRenames.get(rules);
  if (cached) return cached;
  const compiled = rules.map((r, i) => {
    try {
      return { re: new RegExp(r.from), to: r.to };
    } catch (err) {
      throw new MappingError(`rename[${i}].from: invalid regular expression ${JSON.stringify(r.from)} (${(err as Error).message})`);
    }
  });
  const fn = (name: string) => {
    for (const r of compiled) if (r.re.test(name)) return name.replace(r.re, r.to);
    return name;
  };
  compiledRenames.set(rules, fn);
  return fn;
}

function mapWith(source: string, rule: MappingRule, rename: (name: string) => string): string {
  const flattened = flattenRepository(source, rule);
  const mapped = rename(flattened);
  if (!isValidRepositoryName(mapped)) {
    const via = mapped === flattened ? '' : ` (renamed from "${flattened}")`;
    throw new MappingError(`"${source}" maps to "${mapped}"${via}, which is not a valid OCI repository name`, source);
  }
  return mapped;
}

/** Flattening, then rename, then a check that the result is a valid OCI repository name. */
export function mapRepository(source: string, rule: MappingRule): string {
  return mapWith(source, rule, compileRename(rule.rename));
}

/** A mapper for one rule: compiles rename once (throwing MappingError for a bad regex) and remembers each outcome. */
export function createMapper(rule: MappingRule): (source: string) => string {
  const rename = compileRename(rule.rename);
  const memo = new Map<string, string | MappingError>();
  return (source) => {
    let out = memo.get(source);
    if (out === undefined) {
      try {
        out = mapWith(source, rule, rename);
      } catch (err) {
        if (!(err instanceof MappingError)) throw err;
        out = err;
      }
      memo.set(source, out);
    }
    if (out instanceof MappingError) throw out;
    return out;
  };
}

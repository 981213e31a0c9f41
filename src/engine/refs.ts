// Image references on the command line (`ferry copy`): `[scheme://]host[:port]/repo[:tag|@digest]` or
// `<registry name from the config>/repo[:tag|@digest]`.
import type { FerryConfig, RegistryConfig } from '../config/schema.js';

export interface ImageRef {
  /** Registry name in the (possibly extended) config. */
  registry: string;
  repository: string;
  /** Tag or digest. */
  reference: string;
}

export class RefError extends Error {
  override name = 'RefError';
}

/**
 * A first path component names a host, as docker decides it: it has a dot or a port, or it is
 * `localhost`. Anything else that is not a registry of the config is a typo of a registry name (failing
 * here beats five DNS retries against a host named "harbr").
 */
export function looksLikeHost(head: string): boolean {
  return head.includes('.') || head.includes(':') || head === 'localhost' || head.startsWith('[');
}

/**
 * Resolves a reference against the config. Unknown hosts become ad-hoc registries (https, or http for
 * localhost / 127.0.0.1 as docker does) added to the returned registries map, named by `host[:port]`.
 */
export function resolveRef(input: string, config: Pick<FerryConfig, 'registries'>): { ref: ImageRef; registries: Record<string, RegistryConfig> } {
  const registries = { ...config.registries };
  let rest = input.replace(/^docker:\/\//, '');
  let scheme: string | undefined;
  const sm = /^(https?):\/\//.exec(rest);
  if (sm) {
    scheme = sm[1];
    rest = rest.slice(sm[0].length);
  }
  const slash = rest.indexOf('/');
  if (slash <= 0) throw new RefError(`"${input}": expected REGISTRY/REPOSITORY[:TAG|@DIGEST]`);
  const head = rest.slice(0, slash);
  let path = rest.slice(slash + 1);
  let reference = 'latest';
  const at = path.indexOf('@');
  if (at >= 0) {
    reference = path.slice(at + 1);
    path = path.slice(0, at);
  } else {
    const colon = path.lastIndexOf(':');
    if (colon > path.lastIndexOf('/')) {
      reference = path.slice(colon + 1);
      path = path.slice(0, colon);
    }
  }
  if (!path) throw new RefError(`"${input}": missing repository`);

  let registry = !scheme && registries[head] ? head : undefined;
  if (!registry) {
    registry = Object.keys(registries).find((name) => {
      const url = new URL(registries[name]!.url);
      return url.host === head && (!scheme || url.protocol === `${scheme}:`);
    });
  }
  if (!registry && !scheme && !looksLikeHost(head)) {
    const defined = Object.keys(config.registries);
    throw new RefError(
      `"${input}": unknown registry "${head}" (defined: ${defined.join(', ') || 'none'}); a host needs a dot or a port, e.g. ${head}.example.com or localhost:5000`,
    );
  }
  if (!registry) {
    const local = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/.test(head);
    registry = head;
    registries[registry] = {
      url: `${scheme ?? (local ? 'http' : 'https')}://${head}`,
      kind: 'registry',
      insecure: false,
    } as RegistryConfig;
  }
  return { ref: { registry, repository: path, reference }, registries };
}

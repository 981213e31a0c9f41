// RegistryClient: the OCI Distribution API of one registry — ping, catalog, tags, manifests, blobs,
// referrers. Uploads live in upload.ts. Knows nothing of Harbor, TCR or SWR.
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { Authenticator, CATALOG_SCOPE, type CredentialSource, pullScope, pushScope } from './auth.js';
import { AuthError, DigestMismatchError, NotFoundError, RegistryError, UnsupportedContentError, parseErrorBody } from './errors.js';
import { type HttpOptions, type HttpRequest, type HttpResponse, HttpTransport, headerValue, readBytes, readText } from './http.js';
import { MANIFEST_ACCEPT, MediaTypes, isDigest, isValidRepositoryName, isValidTag, sha256Digest } from './media-types.js';

export interface RegistryClientOptions extends Omit<HttpOptions, 'registry'> {
  /** Registry name from the config. */
  name: string;
  /** Base URL, e.g. https://harbor.example.com (a path prefix is kept). */
  url: string;
  credentials?: CredentialSource | undefined;
}

export interface ManifestInfo {
  digest: string;
  mediaType: string;
  size: number;
}

export interface Manifest extends ManifestInfo {
  bytes: Buffer;
}

export interface BlobStream {
  body: Readable;
  /** Total size of the blob. */
  size: number;
  /** Offset of the first byte of `body` (non-zero for a ranged read). */
  start: number;
}

export interface SendOptions extends Omit<HttpRequest, 'url'> {
  url: URL | string;
  /** Token scopes this request needs. */
  scopes: string[];
}

/** Registries cap manifests at 4 MiB (distribution and Harbor alike); refuse anything larger. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_REDIRECTS = 5;

export class RegistryClient {
  readonly name: string;
  readonly baseUrl: URL;
  readonly http: HttpTransport;
  readonly logger: Logger | undefined;
  private readonly auth: Authenticator;

  constructor(opts: RegistryClientOptions) {
    this.name = opts.name;
    const base = new URL(opts.url);
    if (!base.pathname.endsWith('/')) base.pathname += '/';
    this.baseUrl = base;
    this.logger = opts.logger;
    this.http = new HttpTransport({ ...opts, registry: opts.name });
    this.auth = new Authenticator(opts.name, this.http, opts.credentials ?? (async () => undefined), opts.logger);
  }

  /** host[:port] as used in image references. */
  get host(): string {
    return this.baseUrl.host;
  }

  url(path: string): URL {
    return new URL(path.replace(/^\//, ''), this.baseUrl);
  }

  /**
   * Sends an authenticated request: adds the Authorization header for its scopes, answers one
   * challenge (first 401, or a refused cached token), follows redirects of GET/HEAD without ever
   * forwarding the registry's Authorization to another host.
   */
  async send(opts: SendOptions): Promise<HttpResponse> {
    const url = typeof opts.url === 'string' ? this.url(opts.url) : opts.url;
    const scopes = [...opts.scopes];
    for (let attempt = 1; ; attempt++) {
      const authorization = await this.auth.header(scopes);
      const headers = { ...opts.headers, ...(authorization ? { authorization } : {}) };
      const res = await this.http.send({ ...opts, url, headers });
      if (res.statusCode === 401 && attempt < 3) {
        const replayable = opts.body === undefined || opts.body === null || typeof opts.body === 'string' || Buffer.isBuffer(opts.body);
        const retry = await this.auth.onUnauthorized(headerValue(res.headers, 'www-authenticate'), scopes, authorization);
        if (retry && replayable) {
          await res.body.dump().catch(() => undefined);
          continue;
        }
      }
      if (res.statusCode >= 300 && res.statusCode < 400 && (opts.method === 'GET' || opts.method === 'HEAD') && res.headers.location) {
        await res.body.dump().catch(() => undefined);
        return this.followRedirect(opts, url, headerValue(res.headers, 'location')!, authorization);
      }
      return res;
    }
  }

  private async followRedirect(opts: SendOptions, from: URL, location: string, authorization: string | undefined): Promise<HttpResponse> {
    let current = from;
    let target = new URL(location, from);
    for (let hop = 1; hop <= MAX_REDIRECTS; hop++) {
      // Object storage (S3, OSS, COS, OBS) rejects a second auth mechanism, and the registry's token
      // must never leak to another host.
      const sameOrigin = target.origin === this.baseUrl.origin;
      const headers: Record<string, string> = { ...opts.headers };
      if (sameOrigin && authorization) headers.authorization = authorization;
      const res = await this.http.send({ ...opts, url: target, headers });
      const next = headerValue(res.headers, 'location');
      if (res.statusCode >= 300 && res.statusCode < 400 && next) {
        await res.body.dump().catch(() => undefined);
        current = target;
        target = new URL(next, current);
        continue;
      }
      return res;
    }
    throw new RegistryError(`too many redirects (last ${target.origin})`, { registry: this.name, repository: opts.repository });
  }

  /** Builds a typed error from a non-success response and consumes its body. */
  async failure(res: HttpResponse, what: string, repository?: string, method?: string): Promise<RegistryError> {
    const text = method === 'HEAD' ? '' : await readText(res, 64 * 1024).catch(() => '');
    const { code, message } = parseErrorBody(text);
    const details = { registry: this.name, repository, status: res.statusCode, code, detail: message, method };
    if (res.statusCode === 401 || res.statusCode === 403) {
      return new AuthError(`${what}: ${res.statusCode === 401 ? 'authentication failed' : 'permission denied'}`, details);
    }
    if (res.statusCode === 404) return new NotFoundError(`${what}: not found`, details);
    return new RegistryError(`${what} failed`, details);
  }

  /** GET /v2/: reachability and credentials. Throws UnreachableError or AuthError. */
  async ping(): Promise<{ apiVersion?: string | undefined }> {
    const res = await this.send({ method: 'GET', url: 'v2/', scopes: [] });
    if (res.statusCode !== 200) throw await this.failure(res, 'ping /v2/');
    await res.body.dump();
    return { apiVersion: headerValue(res.headers, 'docker-distribution-api-version') };
  }

  /** All repositories via /v2/_catalog, following `Link` pagination. */
  async *catalog(pageSize = 1000): AsyncIterable<string> {
    let url: URL | undefined = this.url(`v2/_catalog?n=${pageSize}`);
    while (url) {
      const res = await this.send({ method: 'GET', url, scopes: [CATALOG_SCOPE] });
      if (res.statusCode !== 200) throw await this.failure(res, 'list repositories (/v2/_catalog)');
      const body = JSON.parse(await readText(res)) as { repositories?: string[] | null };
      const repos = body.repositories ?? [];
      yield* repos;
      url = nextPage(url, headerValue(res.headers, 'link'));
    }
  }

  /** All tags of a repository via tags/list with pagination. A repository the registry does not know has no tags. */
  async listTags(repository: string, pageSize = 1000): Promise<string[]> {
    assertRepository(repository);
    const tags: string[] = [];
    let url: URL | undefined = this.url(`v2/${repository}/tags/list?n=${pageSize}`);
    while (url) {
      const res = await this.send({ method: 'GET', url, scopes: [pullScope(repository)], repository });
      if (res.statusCode === 404) {
        await res.body.dump();
        return tags;
      }
      if (res.statusCode !== 200) throw await this.failure(res, 'list tags', repository);
      const body = JSON.parse(await readText(res)) as { tags?: string[] | null };
      const page = body.tags ?? [];
      tags.push(...page);
      url = nextPage(url, headerValue(res.headers, 'link'));
    }
    return tags;
  }

  /** HEAD a manifest: its digest, media type and size, or undefined when absent. */
  async headManifest(repository: string, reference: string, forPush = false): Promise<ManifestInfo | undefined> {
    assertRepository(repository);
    assertReference(reference);
    const res = await this.send({
      method: 'HEAD',
      url: `v2/${repository}/manifests/${reference}`,
      headers: { accept: MANIFEST_ACCEPT },
      scopes: [forPush ? pushScope(repository) : pullScope(repository)],
      repository,
    });
    await res.body.dump().catch(() => undefined);
    if (res.statusCode === 404) return undefined;
    if (res.statusCode !== 200) throw await this.failure(res, `head manifest ${reference}`, repository, 'HEAD');
    const digest = headerValue(res.headers, 'docker-content-digest');
    if (!digest) {
      // Some registries omit the digest on HEAD; fall back to a GET, which lets us hash the bytes.
      const m = await this.getManifest(repository, reference, forPush);
      return { digest: m.digest, mediaType: m.mediaType, size: m.size };
    }
    return {
      digest,
      mediaType: (headerValue(res.headers, 'content-type') ?? '').split(';')[0]!.trim(),
      size: Number(headerValue(res.headers, 'content-length') ?? 0),
    };
  }

  /**
   * GETs a manifest's exact bytes. When fetched by digest, the bytes are verified against it; when
   * fetched by tag, the digest is computed from the bytes (never trusted from a header alone).
   */
  async getManifest(repository: string, reference: string, forPush = false): Promise<Manifest> {
    assertRepository(repository);
    assertReference(reference);
    const res = await this.send({
      method: 'GET',
      url: `v2/${repository}/manifests/${reference}`,
      headers: { accept: MANIFEST_ACCEPT },
      scopes: [forPush ? pushScope(repository) : pullScope(repository)],
      repository,
    });
    if (res.statusCode !== 200) throw await this.failure(res, `get manifest ${reference}`, repository);
    const bytes = await readBytes(res, MAX_MANIFEST_BYTES);
    if (!bytes) throw new UnsupportedContentError(`${this.name}/${repository}: manifest ${reference} is larger than 4 MiB`);
    const digest = sha256Digest(bytes);
    if (isDigest(reference) && reference.startsWith('sha256:') && reference !== digest) {
      throw new DigestMismatchError(reference, digest, `${this.name}/${repository} manifest`);
    }
    const headerType = (headerValue(res.headers, 'content-type') ?? '').split(';')[0]!.trim();
    let mediaType = headerType;
    try {
      const doc = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown; manifests?: unknown; schemaVersion?: unknown };
      if (typeof doc.mediaType === 'string') mediaType = doc.mediaType;
      else if (!mediaType || mediaType === 'application/json' || mediaType === 'text/plain') {
        mediaType = Array.isArray(doc.manifests) ? MediaTypes.ociIndex : doc.schemaVersion === 1 ? MediaTypes.dockerSchema1 : MediaTypes.ociManifest;
      }
    } catch {
      // parseManifest reports invalid JSON with context
    }
    return { bytes, digest, mediaType, size: bytes.length };
  }

  /** PUTs manifest bytes exactly as given. Returns the digest and whether the registry processed `subject`. */
  async putManifest(repository: string, reference: string, bytes: Buffer, mediaType: string): Promise<{ digest: string; ociSubject?: string | undefined }> {
    assertRepository(repository);
    assertReference(reference);
    const res = await this.send({
      method: 'PUT',
      url: `v2/${repository}/manifests/${reference}`,
      headers: { 'content-type': mediaType },
      body: bytes,
      scopes: [pushScope(repository)],
      repository,
    });
    if (res.statusCode !== 201 && res.statusCode !== 200 && res.statusCode !== 202) throw await this.failure(res, `push manifest ${reference}`, repository);
    await res.body.dump();
    const digest = sha256Digest(bytes);
    const returned = headerValue(res.headers, 'docker-content-digest');
    if (returned && returned !== digest) {
      throw new RegistryError(`registry stored manifest ${reference} under ${returned}, expected ${digest} (it rewrote the manifest)`, {
        registry: this.name,
        repository,
        status: res.statusCode,
      });
    }
    return { digest, ociSubject: headerValue(res.headers, 'oci-subject') };
  }

  /** DELETE a manifest by digest (removes every tag pointing at it). */
  async deleteManifest(repository: string, digest: string): Promise<void> {
    assertRepository(repository);
    const res = await this.send({ method: 'DELETE', url: `v2/${repository}/manifests/${digest}`, scopes: [`repository:${repository}:delete`, pushScope(repository)], repository });
    if (res.statusCode === 404) {
      await res.body.dump();
      return;
    }
    if (res.statusCode !== 202 && res.statusCode !== 200) throw await this.failure(res, `delete manifest ${digest}`, repository);
    await res.body.dump();
  }

  /** HEAD a blob: its size, or undefined when absent. */
  async headBlob(repository: string, digest: string, forPush = true): Promise<{ size: number; acceptRanges: boolean } | undefined> {
    assertRepository(repository);
    const res = await this.send({ method: 'HEAD', url: `v2/${repository}/blobs/${digest}`, scopes: [forPush ? pushScope(repository) : pullScope(repository)], repository });
    await res.body.dump().catch(() => undefined);
    if (res.statusCode === 404) return undefined;
    if (res.statusCode !== 200) throw await this.failure(res, `head blob ${digest}`, repository, 'HEAD');
    return { size: Number(headerValue(res.headers, 'content-length') ?? -1), acceptRanges: headerValue(res.headers, 'accept-ranges') === 'bytes' };
  }

  /**
   * Opens a blob for streaming. `start` > 0 asks for a Range; a registry that ignores it answers 200
   * and the returned `start` is 0 (the caller must then skip bytes itself).
   */
  async getBlob(repository: string, digest: string, opts: { start?: number; end?: number; signal?: AbortSignal } = {}): Promise<BlobStream> {
    assertRepository(repository);
    const start = opts.start ?? 0;
    const ranged = start > 0 || opts.end !== undefined;
    const res = await this.send({
      method: 'GET',
      url: `v2/${repository}/blobs/${digest}`,
      headers: ranged ? { range: `bytes=${start}-${opts.end ?? ''}` } : {},
      scopes: [pullScope(repository)],
      repository,
      signal: opts.signal,
    });
    if (res.statusCode === 206) {
      const range = /bytes (\d+)-(\d+)\/(\d+|\*)/.exec(headerValue(res.headers, 'content-range') ?? '');
      if (!range) {
        res.body.destroy();
        throw new RegistryError('206 answer without a usable Content-Range', { registry: this.name, repository, status: 206 });
      }
      const total = range[3] === '*' ? -1 : Number(range[3]);
      return { body: res.body, size: total, start: Number(range[1]) };
    }
    if (res.statusCode !== 200) throw await this.failure(res, `get blob ${digest}`, repository);
    return { body: res.body, size: Number(headerValue(res.headers, 'content-length') ?? -1), start: 0 };
  }

  /**
   * The Referrers API: an image index of the manifests whose `subject` is `digest`, or undefined when
   * the registry does not implement it (404), in which case callers use the `sha256-<hex>` tag fallback.
   */
  async referrers(repository: string, digest: string): Promise<Manifest | undefined> {
    assertRepository(repository);
    const res = await this.send({ method: 'GET', url: `v2/${repository}/referrers/${digest}`, headers: { accept: MediaTypes.ociIndex }, scopes: [pullScope(repository)], repository });
    if (res.statusCode === 404 || res.statusCode === 400 || res.statusCode === 405) {
      await res.body.dump();
      return undefined;
    }
    if (res.statusCode !== 200) throw await this.failure(res, `referrers of ${digest}`, repository);
    const contentType = (headerValue(res.headers, 'content-type') ?? '').split(';')[0]!.trim();
    const bytes = (await readBytes(res, MAX_MANIFEST_BYTES)) ?? Buffer.alloc(0);
    // Some registries answer 200 with an HTML page or other content for unknown routes.
    if (contentType !== MediaTypes.ociIndex && contentType !== 'application/json') return undefined;
    return { bytes, digest: sha256Digest(bytes), mediaType: MediaTypes.ociIndex, size: bytes.length };
  }

  async close(): Promise<void> {
    await this.http.close();
  }
}

/** Next page from `Link: <url>; rel="next"` (relative to the current page); no header means done. */
export function nextPage(current: URL, link: string | undefined): URL | undefined {
  const m = link ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link) : null;
  return m ? new URL(m[1]!, current) : undefined;
}

export function assertRepository(repository: string): void {
  if (!isValidRepositoryName(repository)) {
    throw new RegistryError(`invalid repository name "${repository}" (OCI names are lowercase [a-z0-9] components separated by / and . _ __ -)`, {
      registry: 'ferry',
      repository,
    });
  }
}

function assertReference(reference: string): void {
  if (!isValidTag(reference) && !isDigest(reference)) {
    throw new RegistryError(`invalid tag or digest "${reference}"`, { registry: 'ferry' });
  }
}

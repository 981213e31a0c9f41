// RegistryClient: the OCI Distribution API of one registry — ping, catalog, tags, manifests, blobs,
// referrers. Uploads live in upload.ts. Knows nothing of Harbor, TCR or SWR.
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { type AuthAnswer, REFRESHED_CREDENTIALS } from '../http/auth.js';
import { readBody, readBodyText, readErrorText } from '../http/body.js';
import { PageCursor, linkNext } from '../http/pagination.js';
import { Transport, type TransportOptions } from '../http/transport.js';
import { type HttpRequest, type HttpResponse, headerValue } from '../http/types.js';
import { Authenticator, CATALOG_SCOPE, type CredentialSource, pullScope, pushScope } from './auth.js';
import {
  AuthError,
  BodyTooLargeError,
  DigestMismatchError,
  NotFoundError,
  RegistryError,
  UnsupportedContentError,
  UnsupportedDigestError,
  parseErrorBody,
} from './errors.js';
import { MANIFEST_ACCEPT, MediaTypes, digestLike, isDigest, isValidRepositoryName, isValidTag, sha256Digest } from './media-types.js';

export interface RegistryClientOptions extends Omit<TransportOptions, 'name' | 'idleTimeoutMs'> {
  /** Registry name from the config. */
  name: string;
  /** Base URL, e.g. https://harbor.example.com (a path prefix is kept). */
  url: string;
  credentials?: CredentialSource | undefined;
  /** Idle timeout for headers and between body chunks, in ms. */
  requestTimeoutMs?: number | undefined;
  /** A transport shared with the registry's product API (same origin, same limits); built from the options when absent. */
  transport?: Transport | undefined;
  /** Cap on pages of one listing (catalog, tags/list, referrers). */
  maxPages?: number | undefined;
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

export interface SendOptions extends Omit<HttpRequest, 'url' | 'auth'> {
  url: URL | string;
  /** Token scopes this request needs. */
  scopes: string[];
}

/** Registries cap manifests at 4 MiB (distribution and Harbor alike); refuse anything larger. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** A page of a listing (catalog, tags/list, referrers index). */
const MAX_PAGE_BYTES = 16 * 1024 * 1024;

/**
 * A 401 on a request whose body could only be sent once (a streamed upload): the client has refreshed
 * its credentials, so repeating the whole operation is worth it (the blob copier does).
 */
export class StaleCredentialsError extends AuthError {
  override name = 'StaleCredentialsError';
  readonly retryable = true;
}

export class RegistryClient {
  readonly name: string;
  readonly baseUrl: URL;
  readonly transport: Transport;
  readonly logger: Logger | undefined;
  private readonly auth: Authenticator;
  private readonly ownsTransport: boolean;
  private readonly maxPages: number | undefined;

  constructor(opts: RegistryClientOptions) {
    this.name = opts.name;
    const base = new URL(opts.url);
    if (!base.pathname.endsWith('/')) base.pathname += '/';
    this.baseUrl = base;
    this.logger = opts.logger;
    this.maxPages = opts.maxPages;
    this.ownsTransport = opts.transport === undefined;
    this.transport = opts.transport ?? new Transport({ ...opts, name: opts.name, idleTimeoutMs: opts.requestTimeoutMs });
    const credentials: CredentialSource = opts.credentials ?? (async () => undefined);
    this.auth = new Authenticator({ registry: opts.name, baseUrl: base, transport: this.transport, credentials, insecure: opts.insecure, logger: opts.logger });
  }

  /** host[:port] as used in image references. */
  get host(): string {
    return this.baseUrl.host;
  }

  url(path: string): URL {
    return new URL(path.replace(/^\//, ''), this.baseUrl);
  }

  /** Requests this registry received so far, by "kind METHOD" (Harbor's API on the same transport included). */
  requestCounts(): Record<string, number> {
    return this.transport.requestCounts()[this.name] ?? {};
  }

  /** Drops cached tokens (a daemon does this between runs). */
  clearTokens(): void {
    this.auth.clearTokens();
  }

  /**
   * Sends a request through the request layer with the registry's credentials for `scopes`: they go
   * to the registry's origin only (redirects, upload Locations and links elsewhere get none); a
   * challenge or a refused token is answered inside (the body is replayed when it can be).
   */
  send(opts: SendOptions): Promise<HttpResponse> {
    const { scopes, ...rest } = opts;
    const url = typeof opts.url === 'string' ? this.url(opts.url) : opts.url;
    return this.transport.send({ ...rest, url, auth: this.auth.forScopes(scopes) });
  }

  /** Builds a typed error from a non-success response and consumes its body. */
  async failure(res: HttpResponse, what: string, repository?: string, method?: string): Promise<RegistryError> {
    const text = method === 'HEAD' ? '' : await readErrorText(res);
    if (method === 'HEAD') await res.body.dump().catch(() => undefined);
    const { code, message } = parseErrorBody(text);
    const details = { registry: this.name, repository, status: res.statusCode, code, detail: message, method };
    if (res.statusCode === 401 && (res as AuthAnswer)[REFRESHED_CREDENTIALS]) {
      return new StaleCredentialsError(`${what}: authentication failed (credentials refreshed; the operation can be repeated)`, details);
    }
    if (res.statusCode === 401 || res.statusCode === 403) {
      return new AuthError(`${what}: ${res.statusCode === 401 ? 'authentication failed' : 'permission denied'}`, details);
    }
    if (res.statusCode === 404) return new NotFoundError(`${what}: not found`, details);
    return new RegistryError(`${what} failed`, details);
  }

  /** GET /v2/: reachability and credentials. Throws UnreachableError or AuthError. */
  async ping(): Promise<{ apiVersion?: string | undefined }> {
    const res = await this.send({ method: 'GET', url: 'v2/', scopes: [], kind: 'ping' });
    if (res.statusCode !== 200) throw await this.failure(res, 'ping /v2/');
    await res.body.dump();
    return { apiVersion: headerValue(res.headers, 'docker-distribution-api-version') };
  }

  /** All repositories via /v2/_catalog, following `Link` pagination (same origin only, visited set, page cap). */
  async *catalog(pageSize = 1000): AsyncIterable<string> {
    let url: URL | undefined = this.url(`v2/_catalog?n=${pageSize}`);
    const cursor = new PageCursor(url, { registry: this.name, what: 'list repositories (/v2/_catalog)', maxPages: this.maxPages });
    while (url) {
      const res = await this.send({ method: 'GET', url, scopes: [CATALOG_SCOPE], kind: 'catalog' });
      if (res.statusCode !== 200) throw await this.failure(res, 'list repositories (/v2/_catalog)');
      const body = parseJson<{ repositories?: string[] | null }>(await readBodyText(res, MAX_PAGE_BYTES, { registry: this.name, what: 'catalog page' }), this.name, 'catalog page');
      const repos = body.repositories ?? [];
      yield* repos;
      url = cursor.next(url, res.headers.link);
    }
  }

  /** All tags of a repository via tags/list with pagination. A repository the registry does not know has no tags. */
  async listTags(repository: string, pageSize = 1000): Promise<string[]> {
    assertRepository(repository);
    const tags: string[] = [];
    let url: URL | undefined = this.url(`v2/${repository}/tags/list?n=${pageSize}`);
    const cursor = new PageCursor(url, { registry: this.name, repository, what: 'list tags', maxPages: this.maxPages });
    while (url) {
      const res = await this.send({ method: 'GET', url, scopes: [pullScope(repository)], repository, kind: 'tags' });
      if (res.statusCode === 404) {
        await res.body.dump();
        return tags;
      }
      if (res.statusCode !== 200) throw await this.failure(res, 'list tags', repository);
      const body = parseJson<{ tags?: string[] | null }>(await readBodyText(res, MAX_PAGE_BYTES, { registry: this.name, repository, what: 'tags page' }), this.name, 'tags page', repository);
      const page = body.tags ?? [];
      tags.push(...page);
      url = cursor.next(url, res.headers.link);
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
      kind: 'manifest',
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
      kind: 'manifest',
    });
    if (res.statusCode !== 200) throw await this.failure(res, `get manifest ${reference}`, repository);
    let bytes: Buffer;
    try {
      bytes = await readBody(res, MAX_MANIFEST_BYTES, { registry: this.name, repository, what: `manifest ${reference}` });
    } catch (err) {
      if (err instanceof BodyTooLargeError) throw new UnsupportedContentError(`${this.name}/${repository}: manifest ${reference} is larger than 4 MiB`, { cause: err });
      throw err;
    }
    const digest = sha256Digest(bytes);
    if (isDigest(reference)) {
      // Verified with the algorithm of the digest it was fetched by; an algorithm Ferry cannot compute is refused.
      const actual = digestLike(reference, bytes);
      if (actual === undefined) throw new UnsupportedDigestError(`${this.name}/${repository}: manifest ${reference} uses a digest algorithm Ferry cannot verify (sha256 and sha512 are supported)`);
      if (actual !== reference) throw new DigestMismatchError(reference, actual, `${this.name}/${repository} manifest`);
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
    return { bytes, digest: isDigest(reference) ? reference : digest, mediaType, size: bytes.length };
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
      kind: 'manifest',
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
    const res = await this.send({ method: 'DELETE', url: `v2/${repository}/manifests/${digest}`, scopes: [`repository:${repository}:delete`, pushScope(repository)], repository, kind: 'manifest' });
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
    const res = await this.send({ method: 'HEAD', url: `v2/${repository}/blobs/${digest}`, scopes: [forPush ? pushScope(repository) : pullScope(repository)], repository, kind: 'blob' });
    await res.body.dump().catch(() => undefined);
    if (res.statusCode === 404) return undefined;
    if (res.statusCode !== 200) throw await this.failure(res, `head blob ${digest}`, repository, 'HEAD');
    return { size: Number(headerValue(res.headers, 'content-length') ?? -1), acceptRanges: headerValue(res.headers, 'accept-ranges') === 'bytes' };
  }

  /**
   * Opens a blob for streaming. `start` > 0 asks for a Range; a registry that ignores it answers 200
   * and the returned `start` is 0 (the caller must then skip bytes itself).
   */
  async getBlob(repository: string, digest: string, opts: { start?: number; end?: number; signal?: AbortSignal | undefined; size?: number | undefined } = {}): Promise<BlobStream> {
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
      kind: 'blob',
      blobBody: true,
      bodyBytes: opts.size !== undefined && opts.size >= 0 ? Math.max(0, (opts.end !== undefined ? opts.end + 1 : opts.size) - start) : undefined,
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
    let url: URL | undefined = this.url(`v2/${repository}/referrers/${digest}`);
    const cursor = new PageCursor(url, { registry: this.name, repository, what: `referrers of ${digest}`, maxPages: this.maxPages });
    const pages: Buffer[] = [];
    while (url) {
      const res = await this.send({ method: 'GET', url, headers: { accept: MediaTypes.ociIndex }, scopes: [pullScope(repository)], repository, kind: 'referrers' });
      if (res.statusCode === 404 || res.statusCode === 400 || res.statusCode === 405) {
        await res.body.dump();
        if (pages.length === 0) return undefined;
        throw new RegistryError(`referrers of ${digest}: page ${pages.length + 1} is missing`, { registry: this.name, repository, status: res.statusCode });
      }
      if (res.statusCode !== 200) throw await this.failure(res, `referrers of ${digest}`, repository);
      const contentType = (headerValue(res.headers, 'content-type') ?? '').split(';')[0]!.trim();
      const bytes = await readBody(res, MAX_MANIFEST_BYTES, { registry: this.name, repository, what: `referrers of ${digest}` });
      // Some registries answer 200 with an HTML page or other content for unknown routes.
      if (contentType !== MediaTypes.ociIndex && contentType !== 'application/json') return undefined;
      pages.push(bytes);
      url = cursor.next(url, res.headers.link);
    }
    const bytes = pages.length === 1 ? pages[0]! : mergeIndexPages(pages);
    return { bytes, digest: sha256Digest(bytes), mediaType: MediaTypes.ociIndex, size: bytes.length };
  }

  async close(): Promise<void> {
    if (this.ownsTransport) await this.transport.close();
  }
}

/** One index of the `manifests` of every page of a paged referrers answer. */
function mergeIndexPages(pages: Buffer[]): Buffer {
  const manifests: unknown[] = [];
  for (const page of pages) {
    try {
      const doc = JSON.parse(page.toString('utf8')) as { manifests?: unknown };
      if (Array.isArray(doc.manifests)) manifests.push(...(doc.manifests as unknown[]));
    } catch {
      // a page that is not JSON adds nothing
    }
  }
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests }));
}

function parseJson<T>(text: string, registry: string, what: string, repository?: string): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new RegistryError(`${what}: the answer is not JSON`, { registry, repository });
  }
}

/** Next page from `Link: <url>; rel="next"` (relative to the current page); no header means done. No origin check: see PageCursor. */
export function nextPage(current: URL, link: string | undefined): URL | undefined {
  const raw = linkNext(link);
  return raw === undefined ? undefined : new URL(raw, current);
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

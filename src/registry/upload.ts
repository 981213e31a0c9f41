// Blob uploads: session start (optionally as a cross-repository mount), monolithic PUT, chunked
// PATCH, session status and cancel. Upload Locations may be relative or absolute and may carry
// query parameters (state tokens): they are resolved against the request URL and `digest` is merged
// into the existing query, never appended blindly. A Location on another origin is used, but gets no
// credentials (the request layer binds them to the registry's origin).
import type { Readable } from 'node:stream';
import type { BodyFactory } from '../http/types.js';
import { headerValue } from '../http/types.js';
import { pullScope, pushScope } from './auth.js';
import type { RegistryClient } from './client.js';
import { RegistryError } from './errors.js';

export type UploadStart =
  | { mounted: true }
  | {
      mounted: false;
      location: URL;
      /** OCI-Chunk-Min-Length: the smallest PATCH the registry accepts (except the last). */
      minChunkLength?: number | undefined;
    };

/** Resolves an upload Location header against the URL of the request that returned it. */
export function resolveLocation(requestUrl: URL, location: string | undefined, client: RegistryClient, repository: string): URL {
  if (!location) throw new RegistryError('upload answer without a Location header', { registry: client.name, repository });
  return new URL(location, requestUrl);
}

/** The session URL with `digest=` merged into its query. */
export function withDigest(location: URL, digest: string): URL {
  const url = new URL(location);
  url.searchParams.set('digest', digest);
  return url;
}

function uploadScopes(repository: string, mountFrom?: string): string[] {
  // Push on the target first, pull on the source: one token for both (distribution's scope rules).
  return mountFrom && mountFrom !== repository ? [pushScope(repository), pullScope(mountFrom)] : [pushScope(repository)];
}

/**
 * Starts an upload session. With `mount`, asks the registry to mount the blob from another repository:
 * 201 means done, 202 means it started a normal session instead (carry on with it), and any error
 * falls back to a plain session (as go-containerregistry does).
 */
export async function startUpload(client: RegistryClient, repository: string, mount?: { digest: string; from: string }): Promise<UploadStart> {
  if (mount) {
    const url = client.url(`v2/${repository}/blobs/uploads/?mount=${encodeURIComponent(mount.digest)}&from=${encodeURIComponent(mount.from)}`);
    const res = await client.send({ method: 'POST', url, headers: { 'content-length': '0' }, body: '', scopes: uploadScopes(repository, mount.from), repository, kind: 'upload' });
    await res.body.dump().catch(() => undefined);
    if (res.statusCode === 201) return { mounted: true };
    if (res.statusCode === 202) return session(res, url, client, repository);
    client.logger?.debug({ registry: client.name, repository, status: res.statusCode }, 'mount refused, uploading instead');
  }
  const url = client.url(`v2/${repository}/blobs/uploads/`);
  const res = await client.send({ method: 'POST', url, headers: { 'content-length': '0' }, body: '', scopes: uploadScopes(repository), repository, kind: 'upload' });
  if (res.statusCode !== 202) throw await client.failure(res, 'start blob upload', repository);
  await res.body.dump().catch(() => undefined);
  return session(res, url, client, repository);
}

function session(res: Awaited<ReturnType<RegistryClient['send']>>, url: URL, client: RegistryClient, repository: string): UploadStart {
  const min = Number(headerValue(res.headers, 'oci-chunk-min-length'));
  return {
    mounted: false,
    location: resolveLocation(url, headerValue(res.headers, 'location'), client, repository),
    minChunkLength: Number.isFinite(min) && min > 0 ? min : undefined,
  };
}

/**
 * Uploads the whole blob in one PUT ?digest=. The registry verifies the digest before committing. A
 * body factory makes the PUT replayable: a 401 is then re-authenticated and the body sent again.
 */
export async function putMonolithic(
  client: RegistryClient,
  repository: string,
  location: URL,
  body: Readable | Buffer | BodyFactory,
  size: number,
  digest: string,
  signal?: AbortSignal,
): Promise<void> {
  const res = await client.send({
    method: 'PUT',
    url: withDigest(location, digest),
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
    body,
    scopes: [pushScope(repository)],
    repository,
    signal,
    kind: 'upload',
    blobBody: true,
    bodyBytes: size,
  });
  if (res.statusCode !== 201 && res.statusCode !== 204 && res.statusCode !== 200) throw await client.failure(res, `upload blob ${digest}`, repository);
  await res.body.dump().catch(() => undefined);
}

/**
 * Sends one chunk (`start` .. `start + length - 1`). Returns the next Location (always use the latest)
 * and the offset the registry confirmed (the end of its Range + 1).
 */
export async function patchChunk(
  client: RegistryClient,
  repository: string,
  location: URL,
  body: Readable | Buffer | BodyFactory,
  start: number,
  length: number,
  signal?: AbortSignal,
): Promise<{ location: URL; offset: number }> {
  const res = await client.send({
    method: 'PATCH',
    url: location,
    headers: {
      'content-type': 'application/octet-stream',
      'content-range': `${start}-${start + length - 1}`,
      'content-length': String(length),
    },
    body,
    scopes: [pushScope(repository)],
    repository,
    signal,
    kind: 'upload',
    blobBody: true,
    bodyBytes: length,
  });
  if (res.statusCode !== 202 && res.statusCode !== 204) {
    const err = await client.failure(res, `upload chunk ${start}-${start + length - 1}`, repository);
    throw err;
  }
  await res.body.dump().catch(() => undefined);
  const next = resolveLocation(location, headerValue(res.headers, 'location') ?? location.href, client, repository);
  return { location: next, offset: rangeEnd(headerValue(res.headers, 'range')) ?? start + length };
}

/** Commits a chunked upload: PUT ?digest= with an empty body. */
export async function finishUpload(client: RegistryClient, repository: string, location: URL, digest: string): Promise<void> {
  const res = await client.send({
    method: 'PUT',
    url: withDigest(location, digest),
    headers: { 'content-type': 'application/octet-stream', 'content-length': '0' },
    body: '',
    scopes: [pushScope(repository)],
    repository,
    kind: 'upload',
  });
  if (res.statusCode !== 201 && res.statusCode !== 204 && res.statusCode !== 200) throw await client.failure(res, `commit blob ${digest}`, repository);
  await res.body.dump().catch(() => undefined);
}

/**
 * Asks where an upload session stands (GET <location>: 204 + Range). Returns undefined when the
 * session is gone (expired or purged): the caller starts the blob over.
 */
export async function uploadStatus(client: RegistryClient, repository: string, location: URL): Promise<{ offset: number; location: URL } | undefined> {
  const res = await client.send({ method: 'GET', url: location, scopes: [pushScope(repository)], repository, kind: 'upload' });
  await res.body.dump().catch(() => undefined);
  if (res.statusCode === 404 || res.statusCode === 400) return undefined;
  if (res.statusCode !== 204 && res.statusCode !== 200) throw await client.failure(res, 'upload status', repository, 'GET');
  return {
    offset: rangeEnd(headerValue(res.headers, 'range')) ?? 0,
    location: resolveLocation(location, headerValue(res.headers, 'location') ?? location.href, client, repository),
  };
}

/** Best-effort DELETE of an upload session, so a failed or aborted upload is never committed. */
export async function cancelUpload(client: RegistryClient, repository: string, location: URL): Promise<void> {
  try {
    const res = await client.send({ method: 'DELETE', url: location, scopes: [pushScope(repository)], repository, kind: 'upload' });
    await res.body.dump().catch(() => undefined);
  } catch {
    // the registry purges abandoned sessions itself
  }
}

/**
 * `Range: 0-1023` → 1024 (the next offset); "bytes=" prefixes tolerated; undefined when absent.
 * distribution answers "0-0" both for an empty session and for one byte: read it as empty, so the
 * worst case is one byte sent twice (answered 416, then the blob starts over).
 */
export function rangeEnd(range: string | undefined): number | undefined {
  const m = range ? /(\d+)-(\d+)/.exec(range) : null;
  if (!m) return undefined;
  return m[1] === '0' && m[2] === '0' ? 0 : Number(m[2]) + 1;
}

// Typed errors for registry traffic. Every error names the registry (config name), the repository when
// there is one, the HTTP status and the registry's own error code, so a report line is actionable.

export interface RegistryErrorDetails {
  registry: string;
  repository?: string | undefined;
  status?: number | undefined;
  /** First error code of the registry's `{"errors":[...]}` body, e.g. MANIFEST_UNKNOWN. */
  code?: string | undefined;
  /** The registry's message for that code. */
  detail?: string | undefined;
  method?: string | undefined;
  cause?: unknown;
}

export class RegistryError extends Error {
  override name = 'RegistryError';
  readonly registry: string;
  readonly repository: string | undefined;
  readonly status: number | undefined;
  readonly code: string | undefined;
  readonly detail: string | undefined;

  constructor(message: string, details: RegistryErrorDetails) {
    details = { ...details, code: details.code && remoteText(details.code, 100), detail: details.detail && remoteText(details.detail) };
    const where = [details.registry, details.repository].filter(Boolean).join('/');
    const how = [details.status && `HTTP ${details.status}`, details.code, details.detail].filter(Boolean).join(' ');
    super(`${where}: ${message}${how ? ` (${how})` : ''}`, { cause: details.cause });
    this.registry = details.registry;
    this.repository = details.repository;
    this.status = details.status;
    this.code = details.code;
    this.detail = details.detail;
  }

  toJSON(): Record<string, unknown> {
    return { name: this.name, message: this.message, registry: this.registry, repository: this.repository, status: this.status, code: this.code };
  }
}

/** 401/403 after authenticating: the credentials were refused or lack the permission. */
export class AuthError extends RegistryError {
  override name = 'AuthError';
}

/** The token service refused the credentials: retrying cannot help (unlike a registry refusing a token). */
export class TokenRefusedError extends AuthError {
  override name = 'TokenRefusedError';
  readonly retryable = false;
}

/** DNS, connection refused, TLS failure, timeout: the registry could not be reached at all. */
export class UnreachableError extends RegistryError {
  override name = 'UnreachableError';
}

/** 404 of a manifest or blob that was expected to exist. */
export class NotFoundError extends RegistryError {
  override name = 'NotFoundError';
}

/** Content whose sha256 differs from the digest it was fetched by. Never retried, never pushed. */
export class DigestMismatchError extends Error {
  override name = 'DigestMismatchError';
  constructor(
    readonly expected: string,
    readonly actual: string,
    readonly where: string,
  ) {
    super(`${where}: digest mismatch, expected ${expected} but the content hashes to ${actual}`);
  }
}

/** Content Ferry cannot copy faithfully (schema 1 manifests, unknown media types). */
export class UnsupportedContentError extends Error {
  override name = 'UnsupportedContentError';
}

/** A response body larger than the reader's limit (the body was discarded). */
export class BodyTooLargeError extends RegistryError {
  override name = 'BodyTooLargeError';
  readonly retryable = false;
  readonly limit: number;
  constructor(message: string, details: RegistryErrorDetails & { limit: number }) {
    super(message, details);
    this.limit = details.limit;
  }
}

/**
 * A Link, Location or token realm that the registry may not point at: another origin for a page
 * link, a realm from another origin's answer, an http realm for an https registry, a link-local or
 * metadata address. Never retried: the answer itself is the problem.
 */
export class UntrustedUrlError extends RegistryError {
  override name = 'UntrustedUrlError';
  readonly retryable = false;
}

/** A digest whose algorithm Ferry cannot verify (only sha256 and sha512 are known). */
export class UnsupportedDigestError extends Error {
  override name = 'UnsupportedDigestError';
  readonly retryable = false;
}

/** Longest registry-supplied text (error message, code) that reaches an error, a log line or a report. */
export const MAX_REMOTE_TEXT = 300;

/**
 * Text from a registry or an API made safe to print: control characters (ANSI escapes, newlines that
 * would forge report lines, NULs) become spaces, runs of whitespace collapse, and the length is capped.
 */
export function remoteText(text: string, max = MAX_REMOTE_TEXT): string {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, ' ').replace(/\s{2,}/g, ' ').trim();
  return clean.length > max ? `${clean.slice(0, max - 1)}…` : clean;
}

/** Parses the OCI error body `{"errors":[{"code","message","detail"}]}` defensively: 4xx bodies may be anything. */
export function parseErrorBody(text: string): { code?: string; message?: string } {
  try {
    const body = JSON.parse(text) as { errors?: { code?: unknown; message?: unknown }[] };
    const first = Array.isArray(body?.errors) ? body.errors[0] : undefined;
    if (first && typeof first === 'object') {
      const out: { code?: string; message?: string } = {};
      if (typeof first.code === 'string') out.code = remoteText(first.code, 100);
      if (typeof first.message === 'string') out.message = remoteText(first.message);
      return out;
    }
  } catch {
    // not JSON: fall through
  }
  const trimmed = remoteText(text, 200);
  return trimmed ? { message: trimmed } : {};
}

/**
 * An answer about one repository (gone, forbidden, an invalid name), not about the registry: a listing
 * reports it as that repository's problem and goes on with the others.
 */
export function isRepositoryScoped(err: RegistryError): boolean {
  if (err instanceof AuthError) return err.status === 403;
  return err.status === 404 || err.status === 403 || err.status === 400 || err.code === 'NAME_UNKNOWN' || err.code === 'NAME_INVALID';
}

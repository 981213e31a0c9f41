// Compact keys of the SQLite state: a sha256 digest is stored as its 32 bytes (39 bytes less than its
// text, in every blob, manifest and pushed-tag row and index); any other digest stays text, so a
// sha512 or unknown algorithm still round-trips.
const SHA256 = /^sha256:[0-9a-f]{64}$/;

export function encodeDigest(digest: string): Buffer | string {
  return SHA256.test(digest) ? Buffer.from(digest.slice(7), 'hex') : digest;
}

export function decodeDigest(value: Buffer | Uint8Array | string): string {
  return typeof value === 'string' ? value : `sha256:${Buffer.from(value).toString('hex')}`;
}

/** SQL for "the id of registry key ?" (interned in `registries`). */
export const REGISTRY_ID = '(SELECT id FROM registries WHERE key = ?)';

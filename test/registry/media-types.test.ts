// Manifest parsing refuses descriptors whose size is not a non-negative safe integer: the size sets
// Content-Length, chunk offsets and the byte budget, so a lying size must stop at the parser.
import { describe, expect, it } from 'vitest';
import { parseManifest } from '../../src/registry/media-types.js';
import { UnsupportedContentError } from '../../src/registry/errors.js';

const digest = `sha256:${'a'.repeat(64)}`;
function manifest(size: unknown): Uint8Array {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest, size: 2 },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest, size }],
    }),
  );
}

describe('descriptor sizes', () => {
  it('accepts 0 and large safe integers', () => {
    expect(parseManifest(manifest(0)).kind).toBe('manifest');
    expect(parseManifest(manifest(2 ** 40)).kind).toBe('manifest');
  });

  it.each([-1, 1.5, 2 ** 53, 1e300, '12', null])('refuses size %s', (size) => {
    expect(() => parseManifest(manifest(size))).toThrow(UnsupportedContentError);
    expect(() => parseManifest(manifest(size))).toThrow(/non-negative integer/);
  });
});

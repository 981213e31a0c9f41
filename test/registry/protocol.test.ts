import { describe, expect, it } from 'vitest';
import { parseChallenge, scopeKey } from '../../src/registry/auth.js';
import { parseErrorBody } from '../../src/registry/errors.js';
import { parseRetryAfter } from '../../src/registry/http.js';
import { parseManifest } from '../../src/registry/media-types.js';
import { nextPage } from '../../src/registry/client.js';
import { rangeEnd, withDigest } from '../../src/registry/upload.js';

describe('protocol details', () => {
  it('parses Bearer challenges with quoted commas and several scopes', () => {
    const c = parseChallenge('Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push repository:c:pull",error="insufficient_scope"');
    expect(c).toEqual({
      scheme: 'bearer',
      params: { realm: 'https://auth.example.com/token', service: 'registry.example.com', scope: 'repository:a/b:pull,push repository:c:pull', error: 'insufficient_scope' },
    });
    expect(parseChallenge('Basic realm="Registry Realm"')).toEqual({ scheme: 'basic', params: { realm: 'Registry Realm' } });
  });

  it('keys tokens by scope set regardless of order', () => {
    expect(scopeKey(['b', 'a', 'b'])).toBe(scopeKey(['a', 'b']));
  });

  it('merges digest= into an existing upload query instead of appending', () => {
    const url = withDigest(new URL('https://r.example/v2/a/blobs/uploads/uuid?_state=abc&x=1'), 'sha256:00');
    expect(url.search).toBe('?_state=abc&x=1&digest=sha256%3A00');
    expect(withDigest(new URL('https://r.example/v2/a/blobs/uploads/uuid'), 'sha256:00').search).toBe('?digest=sha256%3A00');
  });

  it('resolves relative Link headers and stops without one', () => {
    const cur = new URL('http://127.0.0.1:5000/v2/_catalog?n=2');
    expect(nextPage(cur, '</v2/_catalog?last=b&n=2>; rel="next"')?.href).toBe('http://127.0.0.1:5000/v2/_catalog?last=b&n=2');
    expect(nextPage(cur, undefined)).toBeUndefined();
  });

  it('reads upload ranges', () => {
    expect(rangeEnd('0-1023')).toBe(1024);
    expect(rangeEnd('bytes=0-9')).toBe(10);
    expect(rangeEnd('0-0')).toBe(0);
    expect(rangeEnd(undefined)).toBeUndefined();
  });

  it('parses error bodies defensively', () => {
    expect(parseErrorBody('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}')).toEqual({ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' });
    expect(parseErrorBody('<html>502 Bad Gateway</html>')).toEqual({ message: '<html>502 Bad Gateway</html>' });
    expect(parseErrorBody('')).toEqual({});
  });

  it('honours Retry-After in seconds and as a date', () => {
    expect(parseRetryAfter('3')).toBe(3000);
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:05 GMT', now)).toBe(5000);
    expect(parseRetryAfter(undefined)).toBeUndefined();
  });

  it('refuses schema 1 manifests with a clear message', () => {
    const s1 = Buffer.from(JSON.stringify({ schemaVersion: 1, name: 'a', tag: 'b', fsLayers: [] }));
    expect(() => parseManifest(s1)).toThrow(/schema 1/);
  });

  it('parses helm manifests without a mediaType field', () => {
    const m = parseManifest(
      Buffer.from(JSON.stringify({ schemaVersion: 2, config: { mediaType: 'application/vnd.cncf.helm.config.v1+json', digest: 'sha256:aa', size: 1 }, layers: [] })),
      'application/vnd.oci.image.manifest.v1+json',
    );
    expect(m.kind).toBe('manifest');
    expect(m.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
  });
});

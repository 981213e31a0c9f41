// Faults between Ferry and real registries, injected by proxies: connections cut mid-blob (both
// directions), 5xx, 429 with Retry-After, stalls (idle timeout), a trickle (per-blob deadline),
// tokens refused before their announced expiry, and a token service that stops issuing. Each test
// asserts that the destination ends complete and correct, or that the failure is reported with its
// cause; and in every case that no blob at the destination is partial (HEAD + content check).
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FerryConfig } from '../../src/config/schema.js';
import { Engine } from '../../src/engine/engine.js';
import type { SyncReport } from '../../src/engine/report.js';
import {
  type TestImage,
  type TestProxy,
  type TestRegistry,
  type TokenIssuer,
  buildImage,
  getBlob,
  getManifest,
  headBlob,
  pushImage,
  sha256,
  startProxy,
  startRegistry,
  startWanProxy,
} from '../helpers/index.js';
import { transferConfig } from './transfer-fixtures.js';

let source: TestRegistry;
let destination: TestRegistry;
let issuer: TokenIssuer;
let src: TestProxy;
let dst: TestProxy;
let image: TestImage;
const originalMint = { fn: undefined as TokenIssuer['mint'] | undefined };

beforeAll(async () => {
  [source, destination] = await Promise.all([startRegistry(), startRegistry({ auth: 'token' })]);
  issuer = destination.issuer!;
  originalMint.fn = issuer.mint.bind(issuer);
  [src, dst] = await Promise.all([startProxy(source.url), startProxy(destination.url)]);
  image = buildImage({ layers: [400_000, 300_000], format: 'oci' });
  await pushImage(source, 'f/app', '1', image);
}, 60_000);

afterAll(async () => {
  await Promise.all([src?.stop(), dst?.stop()]);
  await Promise.all([source?.stop(), destination?.stop()]);
});

beforeEach(() => {
  src.setFaults({});
  dst.setFaults({});
  src.resetStats();
  dst.resetStats();
  issuer.mint = originalMint.fn!;
  issuer.setUsers([{ username: 'ferry', password: 's3cret' }]);
});

function config(namespace: string, transfer: Record<string, unknown> = {}, sourceUrl = src.url): FerryConfig {
  return transferConfig({
    source: { url: sourceUrl },
    destination: { url: dst.url, username: 'ferry', password: 's3cret' },
    transfer,
    rule: { destinationNamespace: namespace },
  });
}

async function sync(cfg: FerryConfig): Promise<{ report: SyncReport; ms: number }> {
  const engine = new Engine(cfg, { stateDir: false });
  const t0 = Date.now();
  try {
    return { report: await engine.sync(), ms: Date.now() - t0 };
  } finally {
    await engine.close();
  }
}

/** The artifact arrived whole: same manifest digest, every blob present with the right bytes. */
async function expectComplete(namespace: string): Promise<void> {
  expect((await getManifest(destination, `${namespace}/f/app`, '1'))?.digest).toBe(image.digest);
  for (const [digest, bytes] of image.blobs) {
    const got = await getBlob(destination, `${namespace}/f/app`, digest);
    expect(got && sha256(got)).toBe(sha256(bytes));
  }
}

/** Whatever reached the destination is whole: no tag, and each blob either absent or exactly right. */
async function expectNothingPartial(namespace: string): Promise<void> {
  expect(await getManifest(destination, `${namespace}/f/app`, '1')).toBeNull();
  for (const [digest, bytes] of image.blobs) {
    if (await headBlob(destination, `${namespace}/f/app`, digest)) {
      const got = await getBlob(destination, `${namespace}/f/app`, digest);
      expect(got && sha256(got)).toBe(sha256(bytes));
    }
  }
}

function only(report: SyncReport) {
  const items = report.rules[0]!.items;
  expect(items).toHaveLength(1);
  return items[0]!;
}

describe('faults', () => {
  it('retries connections reset mid-blob on the source side', async () => {
    src.setFaults({ resetAfterBytes: 100_000, resetTimes: 2 });
    const { report } = await sync(config('f1', { retries: 3 }));
    expect(only(report).status).toBe('copied');
    expect(src.resets).toBe(2);
    await expectComplete('f1');
  });

  it('retries connections reset mid-upload on the destination side, monolithic and chunked', async () => {
    dst.setFaults({ resetOn: 'upload', resetAfterBytes: 150_000, resetTimes: 2 });
    const { report } = await sync(config('f2', { retries: 3 }));
    expect(only(report).status).toBe('copied');
    expect(dst.resets).toBe(2);
    await expectComplete('f2');

    dst.setFaults({ resetOn: 'upload', resetAfterBytes: 30_000, resetTimes: 2 });
    dst.resetStats();
    const chunked = await sync(config('f2c', { retries: 3, chunkSize: '64KiB' }));
    expect(only(chunked.report).status).toBe('copied');
    expect(dst.resets).toBe(2);
    await expectComplete('f2c');
  });

  it('reports the cause when resets persist, and commits nothing partial', async () => {
    dst.setFaults({ resetOn: 'upload', resetAfterBytes: 50_000 });
    const { report } = await sync(config('f3', { retries: 1 }));
    const item = only(report);
    expect(item.status).toBe('failed');
    expect(item.reason).toMatch(/socket|closed|reset|terminated/i);
    await expectNothingPartial('f3');
  });

  it('retries 5xx answers to uploads and manifest pushes', async () => {
    dst.setFaults({
      statusSequence: [
        { match: /^PUT .*\/blobs\/uploads\//, statuses: [500, 502] },
        { match: /^PUT .*\/manifests\//, statuses: [503] },
        { match: /^POST .*\/blobs\/uploads\//, statuses: [500] },
      ],
    });
    const { report } = await sync(config('f4', { retries: 3 }));
    expect(only(report).status).toBe('copied');
    expect(dst.injectedStatuses).toBe(4);
    await expectComplete('f4');
  });

  it('waits as long as 429 Retry-After says, on replayable requests and on streamed uploads', async () => {
    dst.setFaults({
      statusSequence: [
        { match: /^POST .*\/blobs\/uploads\//, statuses: [429], retryAfter: 0.6 },
        { match: /^PUT .*\/blobs\/uploads\//, statuses: [429], retryAfter: 0.6 },
      ],
    });
    const { report, ms } = await sync(config('f5', { retries: 3, concurrency: 1 }));
    expect(only(report).status).toBe('copied');
    expect(dst.injectedStatuses).toBe(2);
    // Both pauses were honoured (without faults this copy takes a fraction of a second).
    expect(ms).toBeGreaterThanOrEqual(1150);
    await expectComplete('f5');
  });

  it('gives up on a stalled registry after the idle timeout and says so', async () => {
    src.setFaults({ stallMs: 10_000, stallMatch: /^GET .*\/blobs\// });
    const { report, ms } = await sync(config('f6', { retries: 0, requestTimeout: 0.5 }));
    const item = only(report);
    expect(item.status).toBe('failed');
    expect(item.reason).toMatch(/timeout/i);
    expect(ms).toBeLessThan(8000);
    await expectNothingPartial('f6');
  });

  it('abandons a trickling blob at its per-blob deadline (scaled by size)', async () => {
    const wan = await startWanProxy({ host: source.host.split(':')[0]!, port: source.port }, { oneWayDelayMs: 0, bandwidthBytesPerSec: 100_000 });
    try {
      const t0 = Date.now();
      const { report } = await sync(config('f7', { retries: 0, requestTimeout: 0.3, minBlobRate: '1MB/s', concurrency: 1 }, wan.url));
      const item = only(report);
      expect(item.status).toBe('failed');
      expect(item.reason).toMatch(/did not finish within/);
      expect(Date.now() - t0).toBeLessThan(4000); // the 400 kB layer alone would need 4 s
      await expectNothingPartial('f7');
    } finally {
      await wan.stop();
    }
  });

  it('re-authenticates when the registry refuses a token before its announced expiry', async () => {
    // Tokens announce 300 s (so Ferry caches them) but the registry refuses them after ~2 s. Enough
    // retries that a loaded CI machine, slow between a token fetch and the request using it, still
    // gets through: the assertion is that refused tokens are replaced, not how fast.
    issuer.mint = (user, scopes) => originalMint.fn!(user, scopes, 2);
    issuer.resetStats();
    const { report } = await sync(config('f8', { bandwidth: '150KB/s', retries: 5 }));
    expect(only(report).status).toBe('copied');
    await expectComplete('f8');
    const refusedWithToken = dst.requests.filter((r) => r.status === 401 && String(r.headers.authorization ?? '').startsWith('Bearer'));
    expect(refusedWithToken.length).toBeGreaterThan(0);
    expect(issuer.clientRequests().length).toBeGreaterThan(1);
  });

  it('retries a streamed upload refused with 401 once a fresh token is in hand', async () => {
    dst.setFaults({ statusSequence: { match: /^PUT .*\/blobs\/uploads\//, statuses: [401] } });
    const { report } = await sync(config('f9', { retries: 1 }));
    expect(only(report).status).toBe('copied');
    await expectComplete('f9');
  });

  it('fails with the cause when the token service stops issuing tokens, committing nothing partial', async () => {
    issuer.mint = (user, scopes) => originalMint.fn!(user, scopes, 1);
    const engine = new Engine(config('f10', { bandwidth: '200KB/s', retries: 2, concurrency: 1 }), { stateDir: false });
    try {
      const run = engine.sync();
      setTimeout(() => issuer.setUsers([]), 300);
      const report = await run;
      const item = only(report);
      expect(item.status).toBe('failed');
      expect(item.reason).toMatch(/token service refused the credentials/);
    } finally {
      await engine.close();
    }
    issuer.setUsers([{ username: 'ferry', password: 's3cret' }]); // for the test's own client
    await expectNothingPartial('f10');
  });
});

// Connection reuse against a real registry (distribution 2.8): undici closes the connection after a
// HEAD unless the request says otherwise, which made every manifest and blob HEAD of a rerun a new
// TCP (over TLS: TLS) connection. The WAN proxy in front counts the connections accepted.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryClient } from '../../src/registry/client.js';
import { type TestRegistry, type WanProxy, buildImage, pushImage, startRegistry, startWanProxy } from '../helpers/index.js';

let reg: TestRegistry;
let wan: WanProxy;
let digest: string;
let layer: string;

beforeAll(async () => {
  reg = await startRegistry({});
  const image = buildImage();
  digest = (await pushImage(reg, 'team/app', 'v1', image)).digest;
  layer = image.layers[0]!.descriptor.digest;
  wan = await startWanProxy({ host: '127.0.0.1', port: reg.port }, { oneWayDelayMs: 1, bandwidthBytesPerSec: 0 });
});
afterAll(async () => {
  await wan?.stop();
  await reg?.stop();
});

async function inParallel(n: number, width: number, fn: () => Promise<unknown>): Promise<void> {
  let started = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (started++ < n) await fn();
  }));
}

describe('connections', () => {
  it('HEADs of manifests and blobs reuse their connections', async () => {
    const client = new RegistryClient({ name: 'dst', url: wan.url });
    try {
      const before = wan.connections;
      await inParallel(100, 4, async () => expect((await client.headManifest('team/app', 'v1'))?.digest).toBe(digest));
      await inParallel(100, 4, async () => expect((await client.headBlob('team/app', layer, false))?.size).toBeGreaterThan(0));
      // 200 HEADs, 4 at a time: a handful of connections, not one per request.
      expect(wan.connections - before).toBeLessThanOrEqual(12);
    } finally {
      await client.close();
    }
  });
});

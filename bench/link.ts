// The benchmark topology: a fresh token-auth destination registry reached through the WAN emulator
// (startWanProxy from the test helpers: fixed one-way delay, one bandwidth cap shared by every
// connection). The token service is behind the same kind of link (its own delay, no cap: tokens are
// tiny), as it would be in a cloud registry. The source is a local anonymous registry, so the WAN sits
// between Ferry and the destination, as in "Harbor in the data centre → cloud registry".
import { writeFileSync } from 'node:fs';
import { startRegistry, startTokenIssuer, startWanProxy, type TestRegistry, type TokenIssuer, type WanProxy } from '../test/helpers/index.js';
import { RawRegistry } from './raw.js';

export const USER = { username: 'ferry', password: 's3cret' } as const;

export interface Destination {
  /** http://127.0.0.1:PORT of the WAN proxy in front of the registry. */
  url: string;
  host: string;
  registry: TestRegistry;
  wan: WanProxy;
  /** A raw client through the WAN (for checks). */
  client(): RawRegistry;
  /** Stops everything; with `saveLogsTo`, first writes the registry's own log there (for failures). */
  stop(saveLogsTo?: string): Promise<void>;
}

export interface LinkOptions {
  delayMs: number;
  bytesPerSec: number;
}

export async function startDestination(link: LinkOptions): Promise<Destination> {
  const issuer: TokenIssuer = await startTokenIssuer({ users: [{ ...USER }], tokenTtlSeconds: 900 });
  const issuerWan = await startWanProxy({ host: '127.0.0.1', port: new URL(issuer.url).port ? Number(new URL(issuer.url).port) : 80 }, { oneWayDelayMs: link.delayMs, bandwidthBytesPerSec: 0 });
  const registry = await startRegistry({
    auth: 'token',
    issuer,
    users: [{ ...USER }],
    tokenTtlSeconds: 900,
    extraConfig: { auth: { token: { realm: `${issuerWan.url}/token` } } },
  });
  const wan = await startWanProxy({ host: '127.0.0.1', port: registry.port }, { oneWayDelayMs: link.delayMs, bandwidthBytesPerSec: link.bytesPerSec });
  const clients: RawRegistry[] = [];
  return {
    url: wan.url,
    host: wan.host,
    registry,
    wan,
    client() {
      const c = new RawRegistry({ url: wan.url, ...USER });
      clients.push(c);
      return c;
    },
    async stop(saveLogsTo?: string) {
      if (saveLogsTo) writeFileSync(saveLogsTo, registry.logs());
      await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
      await wan.stop();
      await registry.stop();
      await issuerWan.stop();
      await issuer.stop();
    },
  };
}

export async function startSource(storageDir: string): Promise<TestRegistry> {
  return startRegistry({ auth: 'none', storageDir });
}

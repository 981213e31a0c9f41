// Credentials never leave their origin, against real registries (distribution 2.8 with Basic and with
// token auth) behind a hostile front that rewrites Link, Location and the token realm to another
// loopback origin recording whether it received Authorization (test/helpers/hostile-front.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { Engine } from '../../src/engine/engine.js';
import { RegistryClient } from '../../src/registry/client.js';
import { AuthError, UntrustedUrlError } from '../../src/registry/errors.js';
import { putMonolithic, startUpload } from '../../src/registry/upload.js';
import { type HostileFront, type HostileRewrites, type TestRegistry, buildImage, pushImage, sha256, startHostileFront, startRegistry } from '../helpers/index.js';

let basic: TestRegistry;
let token: TestRegistry;
const fronts: HostileFront[] = [];
const image = buildImage({ layers: [2048] });

beforeAll(async () => {
  [basic, token] = await Promise.all([startRegistry({ auth: 'basic' }), startRegistry({ auth: 'token' })]);
  for (const reg of [basic, token]) {
    await pushImage(reg, 'team/a', '1', image);
    await pushImage(reg, 'team/a', '2', image);
    await pushImage(reg, 'team/b', '1', image);
  }
});
afterAll(async () => {
  await Promise.all(fronts.map((f) => f.stop()));
  await Promise.all([basic?.stop(), token?.stop()]);
});

async function front(reg: TestRegistry, rewrite: HostileRewrites, elsewhereChallenges = false): Promise<HostileFront> {
  const f = await startHostileFront(reg.url, { rewrite, elsewhereChallenges });
  fronts.push(f);
  return f;
}

function client(reg: TestRegistry, f: HostileFront): RegistryClient {
  return new RegistryClient({ name: 'src', url: f.url, credentials: async () => ({ username: reg.username!, password: reg.password! }), retries: 0 });
}

async function collect(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe.each([
  ['Basic', () => basic],
  ['token', () => token],
])('behind a hostile front (%s auth)', (_name, registry) => {
  it('refuses a catalog Link to another origin and never contacts it', async () => {
    const f = await front(registry(), { link: true });
    const c = client(registry(), f);
    const err = await collect(c.catalog(1)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UntrustedUrlError);
    expect(f.rewrites).toBeGreaterThan(0);
    expect(f.elsewhereRequests).toHaveLength(0);
    await c.close();
  });

  it('refuses a tags/list Link to another origin and never contacts it', async () => {
    const f = await front(registry(), { link: true, tagsLink: true });
    const c = client(registry(), f);
    await expect(c.listTags('team/a', 1)).rejects.toBeInstanceOf(UntrustedUrlError);
    expect(f.elsewhereRequests).toHaveLength(0);
    // Without the hostile rewrite the same listing pages normally.
    const plain = new RegistryClient({ name: 'src', url: registry().url, credentials: async () => ({ username: registry().username!, password: registry().password! }) });
    expect((await plain.listTags('team/a', 1)).sort()).toEqual(['1', '2']);
    await Promise.all([c.close(), plain.close()]);
  });

  it('sends no credentials to an upload Location on another origin', async () => {
    const f = await front(registry(), { location: true });
    const c = client(registry(), f);
    const session = await startUpload(c, 'team/up');
    expect(session.mounted).toBe(false);
    const location = (session as { location: URL }).location;
    expect(location.origin).toBe(f.elsewhereUrl);
    const bytes = Buffer.from('not sent with credentials');
    // The registry behind "elsewhere" rightly refuses an upload without credentials.
    await expect(putMonolithic(c, 'team/up', location, bytes, bytes.length, sha256(bytes))).rejects.toBeInstanceOf(AuthError);
    expect(f.elsewhereRequests.length).toBeGreaterThan(0);
    expect(f.authorizationSeenElsewhere).toBe(false);
    await c.close();
  });

  it('follows a blob redirect to another origin without credentials, and ignores the realm that origin names', async () => {
    const f = await front(registry(), { redirect: true }, true);
    const c = client(registry(), f);
    const err = await c.getBlob('team/a', image.layers[0]!.digest).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuthError);
    // Reached once, without Authorization; no token request went there either.
    expect(f.elsewhereRequests.map((r) => r.path.split('?')[0])).toEqual([`/v2/team/a/blobs/${image.layers[0]!.digest}`]);
    expect(f.authorizationSeenElsewhere).toBe(false);
    await c.close();
  });

  it('a sync into a destination whose upload Locations point elsewhere fails those blobs, and no credentials leave', async () => {
    const src = await startRegistry({ auth: 'none' });
    const f = await front(registry(), { location: true });
    try {
      await pushImage(src, 'lib/app', '1', buildImage({ layers: [1500] }));
      const config = parseConfig({
        registries: { s: { url: src.url }, d: { url: f.url, username: registry().username, password: registry().password } },
        rules: [{ name: 'r', source: 's', destination: 'd' }],
        transfer: { retries: 0 },
      });
      const engine = new Engine(config, { stateDir: false });
      try {
        const report = await engine.sync();
        expect(report.rules[0]!.artifacts.failed).toBe(1);
      } finally {
        await engine.close();
      }
      expect(f.elsewhereRequests.length).toBeGreaterThan(0);
      expect(f.authorizationSeenElsewhere).toBe(false);
    } finally {
      await src.stop();
    }
  });
});

describe('token realm rules against a real token registry', () => {
  it('refuses a realm rewritten to a cloud metadata address', async () => {
    const f = await front(token, { realm: 'http://169.254.169.254/latest/meta-data/token' });
    const c = client(token, f);
    const err = await c.ping().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UntrustedUrlError);
    expect((err as Error).message).toMatch(/metadata/);
    await c.close();
  });

  it('sends the password only to the realm the registry names, and the token only to the registry', async () => {
    const f = await front(token, { realm: `${token.issuer!.url}/token` });
    const c = client(token, f);
    expect((await c.listTags('team/a')).sort()).toEqual(['1', '2']);
    expect(f.requests.every((r) => r.headers.authorization === undefined || String(r.headers.authorization).startsWith('Bearer '))).toBe(true);
    await c.close();
  });
});

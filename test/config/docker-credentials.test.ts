// Credentials from docker's and podman's files and from credential helpers (a small fake
// `docker-credential-<name>` script on PATH, called as docker calls it).
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { authFiles, lookupCredential, runCredentialHelper, withStoredCredentials } from '../../src/config/docker-credentials.js';
import { parseConfig } from '../../src/config/load.js';

const dir = mkdtempSync(join(tmpdir(), 'ferry-creds-'));
const bin = join(dir, 'bin');
mkdirSync(bin);
const calls = join(dir, 'calls.log');

/** A helper that knows one server, logs its argument and stdin, and says "not found" for others. */
function fakeHelper(name: string, server: string, username: string, secret: string): void {
  const file = join(bin, `docker-credential-${name}`);
  writeFileSync(
    file,
    `#!/bin/sh
read -r server
echo "${name} $1 $server" >> ${calls}
if [ "$server" = "${server}" ]; then
  printf '{"ServerURL":"%s","Username":"${username}","Secret":"${secret}"}' "$server"
else
  echo "credentials not found in native keychain"
  exit 1
fi
`,
  );
  chmodSync(file, 0o755);
}

function writeJson(path: string, value: unknown): string {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, JSON.stringify(value));
  return path;
}

const basic = (user: string, pass: string) => Buffer.from(`${user}:${pass}`).toString('base64');
const env = (extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv => ({ PATH: `${bin}:${process.env.PATH}`, HOME: join(dir, 'home'), ...extra });

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('stored registry credentials', () => {
  it('reads auths: base64 auth and username/password, with or without scheme; Docker Hub by its v1 key', async () => {
    const file = writeJson(join(dir, 'd1', 'config.json'), {
      auths: {
        'harbor.example.com': { auth: basic('robot$sync', 'pa:ss') },
        'https://127.0.0.1:5000': { username: 'u', password: 'p' },
        'https://index.docker.io/v1/': { auth: basic('hub', 'hubpw') },
      },
    });
    const e = env({ DOCKER_CONFIG: join(file, '..') });
    expect(await lookupCredential('harbor.example.com', { env: e })).toMatchObject({ username: 'robot$sync', password: 'pa:ss' });
    expect(await lookupCredential('127.0.0.1:5000', { env: e })).toMatchObject({ username: 'u', password: 'p' });
    expect(await lookupCredential('registry-1.docker.io', { env: e })).toMatchObject({ username: 'hub', password: 'hubpw' });
    expect(await lookupCredential('other.example.com', { env: e })).toBeUndefined();
  });

  it('REGISTRY_AUTH_FILE (containers-auth.json) comes before ~/.docker/config.json', async () => {
    const authFile = writeJson(join(dir, 'podman', 'auth.json'), { auths: { 'reg.example.com': { auth: basic('podman', 'pw1') } } });
    writeJson(join(dir, 'home', '.docker', 'config.json'), { auths: { 'reg.example.com': { auth: basic('docker', 'pw2') } } });
    expect(authFiles({ env: env({ REGISTRY_AUTH_FILE: authFile }) })[0]).toBe(authFile);
    expect(await lookupCredential('reg.example.com', { env: env({ REGISTRY_AUTH_FILE: authFile }) })).toMatchObject({ username: 'podman', password: 'pw1' });
    expect(await lookupCredential('reg.example.com', { env: env({}) })).toMatchObject({ username: 'docker', password: 'pw2' });
  });

  it('runs credHelpers[host] and credsStore as docker does: `get`, the server on stdin, JSON on stdout', async () => {
    fakeHelper('fake', 'helped.example.com', 'helper-user', 'helper-secret');
    fakeHelper('store', 'stored.example.com:8443', 'store-user', 'store-secret');
    const cfg = join(dir, 'd2');
    writeJson(join(cfg, 'config.json'), { credHelpers: { 'helped.example.com': 'fake' }, credsStore: 'store', auths: { 'plain.example.com': { auth: basic('a', 'b') } } });
    const e = env({ DOCKER_CONFIG: cfg });
    expect(await lookupCredential('helped.example.com', { env: e })).toEqual({ username: 'helper-user', password: 'helper-secret', source: 'docker-credential-fake' });
    expect(await lookupCredential('stored.example.com:8443', { env: e })).toMatchObject({ username: 'store-user', password: 'store-secret' });
    // The store does not know it: the auths entry is used.
    expect(await lookupCredential('plain.example.com', { env: e })).toMatchObject({ username: 'a', password: 'b' });
    const log = readFileSync(calls, 'utf8');
    expect(log).toContain('fake get helped.example.com\n');
    expect(log).toContain('store get stored.example.com:8443\n');
  });

  it('a missing or failing helper is no credential and names the helper, never the secret', async () => {
    await expect(runCredentialHelper('absent', 'x.example.com', { env: env({}) })).rejects.toThrow(/docker-credential-absent: not found on PATH/);
    const cfg = join(dir, 'd3');
    writeJson(join(cfg, 'config.json'), { credsStore: 'absent', auths: { 'x.example.com': { auth: basic('fallback', 'pw') } } });
    const warnings: string[] = [];
    const logger = { warn: (o: unknown, m: string) => warnings.push(`${JSON.stringify(o)} ${m}`), debug: () => undefined } as never;
    expect(await lookupCredential('x.example.com', { env: env({ DOCKER_CONFIG: cfg }), logger })).toMatchObject({ username: 'fallback' });
    expect(warnings.join('\n')).toMatch(/docker-credential-absent: not found on PATH/);
  });

  it('fills only registries without a login of their own', async () => {
    const cfg = join(dir, 'd4');
    writeJson(join(cfg, 'config.json'), { auths: { 'a.example.com': { auth: basic('stored', 'pw') }, 'b.example.com': { auth: basic('stored', 'pw') } } });
    const config = parseConfig({
      registries: { a: { url: 'https://a.example.com' }, b: { url: 'https://b.example.com', username: 'own', password: 'own' }, c: { url: 'https://c.example.com' } },
    });
    const filled = await withStoredCredentials(config, undefined, { env: env({ DOCKER_CONFIG: cfg }) });
    expect(filled.registries.a).toMatchObject({ username: 'stored', password: 'pw' });
    expect(filled.registries.b).toMatchObject({ username: 'own', password: 'own' });
    expect(filled.registries.c!.username).toBeUndefined();
    expect(config.registries.a!.username).toBeUndefined(); // not modified in place
  });
});

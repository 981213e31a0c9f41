// TLS to a registry: a private CA via caFile, "Verify Remote Cert" off via insecure, and a clear
// unreachable error otherwise. A TLS terminator (private self-signed certificate) sits in front of a
// real registry configured for relative Location URLs.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { Engine, PreflightError } from '../../src/engine/engine.js';
import { type TestRegistry, buildImage, getManifest, listenOnFreePort, pushImage, startRegistry } from '../helpers/index.js';

const dir = mkdtempSync(join(tmpdir(), 'ferry-tls-'));
let source: TestRegistry;
let destination: TestRegistry;
let tls: Server;
let tlsUrl: string;
const image = buildImage({ layers: [5000] });

beforeAll(async () => {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'ca.pem'), '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  [source, destination] = await Promise.all([startRegistry({ auth: 'none' }), startRegistry({ auth: 'none', extraConfig: { http: { relativeurls: true } } })]);
  await pushImage(source, 'secure/app', '1', image);
  tls = createServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'ca.pem')) }, (socket) => {
    const upstream = connect(destination.port, '127.0.0.1');
    socket.pipe(upstream).pipe(socket);
    socket.on('error', () => upstream.destroy());
    upstream.on('error', () => socket.destroy());
  });
  tlsUrl = `https://127.0.0.1:${await listenOnFreePort(tls as unknown as import('node:net').Server)}`;
});
afterAll(async () => {
  tls?.close();
  await Promise.all([source?.stop(), destination?.stop()]);
});

function engine(dst: Record<string, unknown>): Engine {
  return new Engine(parseConfig({ registries: { s: { url: source.url }, d: { url: tlsUrl, ...dst } }, rules: [{ name: 'r', source: 's', destination: 'd' }] }), { stateDir: false });
}

describe('TLS', () => {
  it('refuses an untrusted certificate as an unreachable registry', async () => {
    const e = engine({});
    try {
      await expect(e.sync()).rejects.toSatisfy((err: unknown) => err instanceof PreflightError && /d: .*cannot reach.*(self-signed|certificate)/i.test(err.message));
    } finally {
      await e.close();
    }
  });

  it('trusts a private CA given as caFile', async () => {
    const e = engine({ caFile: join(dir, 'ca.pem') });
    try {
      expect((await e.sync()).rules[0]!.artifacts.copied).toBe(1);
      expect((await getManifest(destination, 'secure/app', '1'))?.digest).toBe(image.digest);
    } finally {
      await e.close();
    }
  });

  it('skips verification with insecure: true', async () => {
    const e = engine({ insecure: true });
    try {
      expect((await e.sync()).rules[0]!.artifacts.present).toBe(1);
    } finally {
      await e.close();
    }
  });
});

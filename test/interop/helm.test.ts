// Helm charts made and read by the real helm (v3): `helm package` + `helm push` to distribution 2.8
// with token auth, copied by Ferry to go-containerregistry's registry (Basic auth), `helm pull` and
// `helm show chart` from there with the chart's digest and bytes unchanged.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestRegistry, startRegistry } from '../helpers/index.js';
import { ferrySync } from './ferry.js';
import { ClientHome, type ReferrersRegistry, startReferrersRegistry } from './tools.js';

let source: TestRegistry;
let destination: ReferrersRegistry;
const home = new ClientHome();

/** helm prints `Digest: sha256:…` after push and pull. */
function digestOf(output: string): string {
  const m = /Digest:\s*(sha256:[0-9a-f]{64})/.exec(output);
  if (!m) throw new Error(`no digest in helm's output:\n${output}`);
  return m[1]!;
}

beforeAll(async () => {
  [source, destination] = await Promise.all([startRegistry({ auth: 'token' }), startReferrersRegistry()]);
  home.addRegistry(source.host, { username: source.username!, password: source.password! });
  home.addRegistry(destination.host, destination);
});

afterAll(async () => {
  await Promise.all([source?.stop(), destination?.stop()]);
  home.remove();
});

describe('helm package / push -> Ferry -> helm pull', () => {
  it('pulls the chart helm pushed, digest and archive unchanged', async () => {
    await home.run('helm', ['create', 'webapp']);
    const packaged = await home.run('helm', ['package', 'webapp', '--version', '1.4.2', '--app-version', '2.0.1']);
    expect(packaged.stdout).toMatch(/webapp-1\.4\.2\.tgz/);
    const archive = readFileSync(join(home.dir, 'webapp-1.4.2.tgz'));

    const pushed = await home.run('helm', ['push', 'webapp-1.4.2.tgz', `oci://${source.host}/charts`, '--plain-http']);
    const pushedDigest = digestOf(pushed.stdout + pushed.stderr);

    const { report, text } = await ferrySync(source, destination, { rule: { filters: { repositories: ['charts/**'] } } });
    expect(report.rules[0]!.status, text).toBe('ok');
    expect(report.rules[0]!.items.map((i) => [i.sourceRepository, i.kind, i.status])).toEqual([['charts/webapp', 'chart', 'copied']]);

    mkdirSync(join(home.dir, 'out'));
    const pulled = await home.run('helm', ['pull', `oci://${destination.host}/charts/webapp`, '--version', '1.4.2', '--plain-http', '--destination', 'out']);
    expect(digestOf(pulled.stdout + pulled.stderr)).toBe(pushedDigest);
    expect(readFileSync(join(home.dir, 'out', 'webapp-1.4.2.tgz')).equals(archive)).toBe(true);

    const shown = await home.run('helm', ['show', 'chart', `oci://${destination.host}/charts/webapp`, '--version', '1.4.2', '--plain-http']);
    expect(shown.stdout).toMatch(/^name: webapp$/m);
    expect(shown.stdout).toMatch(/^appVersion: 2\.0\.1$/m);
  });
});

// ChartMuseum (Harbor <= 2.7) -> OCI with the real helm: a chart made by `helm package`, served by the
// Harbor stand-in's ChartMuseum API (Basic auth), converted by Ferry into an OCI chart on distribution
// v3 (token auth). `helm pull` gets the archive ChartMuseum served, `helm show chart` and
// `helm template` read it.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HarborStub, startHarborStub } from '../helpers/harbor-stub.js';
import { type TestRegistry, startRegistry } from '../helpers/index.js';
import { ferrySync } from './ferry.js';
import { ClientHome, startDistributionV3 } from './tools.js';

let v3: TestRegistry;
let harborRegistry: TestRegistry;
let harbor: HarborStub | undefined;
const home = new ClientHome();

afterAll(async () => {
  await harbor?.close();
  await Promise.all([v3?.stop(), harborRegistry?.stop()]);
  home.remove();
});

describe('ChartMuseum (Harbor <= 2.7) -> Ferry -> OCI -> helm pull / helm show chart', () => {
  beforeAll(async () => {
    [v3, harborRegistry] = await Promise.all([startDistributionV3({ auth: 'token' }), startRegistry()]);
    home.addRegistry(v3.host, { username: v3.username!, password: v3.password! });
  });

  it('converts a chart helm packaged into one helm reads', async () => {
    await home.run('helm', ['create', 'museum']);
    await home.run('helm', ['package', 'museum', '--version', '0.3.0', '--app-version', '5.1', '--destination', 'museum-pkg']);
    const archive = readFileSync(join(home.dir, 'museum-pkg', 'museum-0.3.0.tgz'));
    const admin = { username: 'admin', password: 'Harbor12345' };
    harbor = await startHarborStub({
      registryUrl: harborRegistry.url,
      users: { [admin.username]: admin.password },
      projects: [{ name: 'library' }],
      charts: [{ project: 'library', name: 'museum', version: '0.3.0', appVersion: '5.1', content: archive }],
    });

    const { report, text } = await ferrySync({ url: harbor.url, ...admin }, v3, { sourceExtra: { kind: 'harbor' }, rule: { filters: { kinds: ['chart'] }, destinationNamespace: 'helm' } });
    expect(report.rules[0]!.status, text).toBe('ok');
    expect(report.rules[0]!.items.map((i) => [i.sourceRepository, i.status])).toEqual([['library/museum', 'copied']]);

    const ref = `oci://${v3.host}/helm/library/museum`;
    mkdirSync(join(home.dir, 'museum-out'));
    await home.run('helm', ['pull', ref, '--version', '0.3.0', '--plain-http', '--destination', 'museum-out']);
    expect(readFileSync(join(home.dir, 'museum-out', 'museum-0.3.0.tgz')).equals(archive)).toBe(true);
    const shown = await home.run('helm', ['show', 'chart', ref, '--version', '0.3.0', '--plain-http']);
    expect(shown.stdout).toMatch(/^name: museum$/m);
    expect(shown.stdout).toMatch(/^version: 0\.3\.0$/m);
    expect(shown.stdout).toMatch(/^appVersion: "5\.1"$/m);
    // helm can render what it pulled.
    const rendered = await home.run('helm', ['template', 'demo', ref, '--version', '0.3.0', '--plain-http']);
    expect(rendered.stdout).toMatch(/kind: Deployment/);
  });
});

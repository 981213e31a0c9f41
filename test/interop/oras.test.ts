// OCI artifacts made by the real oras: `oras push` of two files with an artifactType and manifest
// annotations to go-containerregistry's registry (Basic auth), copied by Ferry to distribution 2.8
// (token auth), `oras pull` from there gets the same files, `oras manifest fetch` the same manifest.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestRegistry, randomBlob, sha256, startRegistry } from '../helpers/index.js';
import { ferrySync } from './ferry.js';
import { ClientHome, type ReferrersRegistry, startReferrersRegistry } from './tools.js';

let source: ReferrersRegistry;
let destination: TestRegistry;
const home = new ClientHome();

beforeAll(async () => {
  [source, destination] = await Promise.all([startReferrersRegistry(), startRegistry({ auth: 'token' })]);
  home.addRegistry(source.host, source);
  home.addRegistry(destination.host, { username: destination.username!, password: destination.password! });
});

afterAll(async () => {
  await Promise.all([source?.stop(), destination?.stop()]);
  home.remove();
});

describe('oras push -> Ferry -> oras pull', () => {
  it('pulls the same files from the same manifest', async () => {
    mkdirSync(join(home.dir, 'push'));
    const model = randomBlob(300 * 1024);
    writeFileSync(join(home.dir, 'push', 'model.bin'), model);
    writeFileSync(join(home.dir, 'push', 'README.md'), '# model\n');
    const pushed = await home.run(
      'oras',
      ['push', '--plain-http', '--artifact-type', 'application/vnd.example.model.v1', '--annotation', 'org.opencontainers.image.source=https://example.com/model', `${source.host}/ml/model:v2`, 'model.bin:application/vnd.example.model.layer.v1', 'README.md:text/markdown'],
      { cwd: join(home.dir, 'push') },
    );
    const digest = /Digest:\s*(sha256:[0-9a-f]{64})/.exec(pushed.stdout)?.[1];
    expect(digest, pushed.stdout).toBeDefined();

    const { report, text } = await ferrySync(source, destination, { rule: { filters: { repositories: ['ml/**'] } } });
    expect(report.rules[0]!.status, text).toBe('ok');
    expect(report.rules[0]!.items.map((i) => [i.sourceRepository, i.kind, i.status])).toEqual([['ml/model', 'artifact', 'copied']]);

    const fetched = await home.run('oras', ['manifest', 'fetch', '--plain-http', `${destination.host}/ml/model:v2`]);
    expect(sha256(fetched.stdoutBytes)).toBe(digest);
    mkdirSync(join(home.dir, 'pull'));
    await home.run('oras', ['pull', '--plain-http', `${destination.host}/ml/model:v2`], { cwd: join(home.dir, 'pull') });
    expect(readFileSync(join(home.dir, 'pull', 'model.bin')).equals(model)).toBe(true);
    expect(readFileSync(join(home.dir, 'pull', 'README.md'), 'utf8')).toBe('# model\n');
  });
});

// Multi-platform images built by the real tools from local tarballs (nothing comes from a public
// registry): `crane append` + `crane mutate --set-platform` + `crane index append` (an OCI index) and
// `regctl index create` (a Docker manifest list), on distribution v3 with token auth (realm on the registry's host:port, see startSameOriginTokenRegistry); copied by Ferry to
// distribution 2.8 (Basic) with and without a platform filter, then read with `crane manifest` and
// `regctl image inspect`.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MT, type TestRegistry, startRegistry } from '../helpers/index.js';
import { ferrySync } from './ferry.js';
import { ClientHome, startDistributionV3, startSameOriginTokenRegistry } from './tools.js';

let source: TestRegistry;
let destination: TestRegistry;
const home = new ClientHome();
const indexes: Record<'oci' | 'docker', string> = { oci: '', docker: '' };

/** A tarball with one file, as a layer. */
function layerTar(name: string, content: string): string {
  const dir = join(home.dir, 'layers', name);
  mkdirSync(join(dir, 'etc'), { recursive: true });
  writeFileSync(join(dir, 'etc', 'platform'), content);
  const tar = join(home.dir, 'layers', `${name}.tar`);
  execFileSync('tar', ['-C', dir, '-cf', tar, 'etc']);
  return tar;
}

async function crane(...args: string[]): Promise<string> {
  return (await home.run('crane', args)).stdout.trim();
}

async function regctl(...args: string[]): Promise<string> {
  return (await home.run('regctl', args)).stdout.trim();
}

interface IndexDoc {
  mediaType: string;
  manifests: { mediaType: string; digest: string; platform?: { os: string; architecture: string; variant?: string } }[];
}

beforeAll(async () => {
  [source, destination] = await Promise.all([startSameOriginTokenRegistry(startDistributionV3), startRegistry({ auth: 'basic' })]);
  home.addRegistry(source.host, { username: source.username!, password: source.password! });
  home.addRegistry(destination.host, { username: destination.username!, password: destination.password! });

  const src = source.host;
  for (const [format, baseFlag] of [['oci', ['--oci-empty-base']], ['docker', []]] as const) {
    const refs: string[] = [];
    for (const platform of ['linux/amd64', 'linux/arm64/v8', 'linux/s390x']) {
      const name = `${format}-${platform.replaceAll('/', '-')}`;
      const ref = `${src}/build/app:${name}`;
      await crane('append', ...baseFlag, '-f', layerTar(name, `${platform}\n`), '-t', ref);
      // --set-platform writes os/architecture/variant into the config: what `docker buildx` would have.
      await crane('mutate', '--set-platform', platform, ref);
      refs.push(ref);
    }
    const target = `${src}/multi/app:${format}`;
    if (format === 'oci') await crane('index', 'append', '-t', target, ...refs.flatMap((r) => ['-m', r]));
    else await regctl('index', 'create', target, '--media-type', MT.dockerList, ...refs.flatMap((r) => ['--ref', r]));
    indexes[format] = await crane('digest', target);
  }
});

afterAll(async () => {
  await Promise.all([source?.stop(), destination?.stop()]);
  home.remove();
});

describe('multi-platform images made by crane and regctl', () => {
  it('were built as an OCI index and a Docker manifest list of three platforms', async () => {
    const oci = JSON.parse(await crane('manifest', `${source.host}/multi/app:oci`)) as IndexDoc;
    expect(oci.mediaType).toBe(MT.ociIndex);
    expect(oci.manifests.map((m) => m.platform?.architecture)).toEqual(['amd64', 'arm64', 's390x']);
    const docker = JSON.parse(await crane('manifest', `${source.host}/multi/app:docker`)) as IndexDoc;
    expect(docker.mediaType).toBe(MT.dockerList);
    expect(docker.manifests.map((m) => m.mediaType)).toEqual([MT.dockerManifest, MT.dockerManifest, MT.dockerManifest]);
  });

  it('copies both byte for byte without a platform filter', async () => {
    const { report, text } = await ferrySync(source, destination, { rule: { filters: { repositories: ['multi/**'] } } });
    expect(report.rules[0]!.status, text).toBe('ok');
    for (const format of ['oci', 'docker'] as const) {
      const ref = `${destination.host}/multi/app:${format}`;
      expect(await crane('digest', ref)).toBe(indexes[format]);
      const config = JSON.parse(await regctl('image', 'config', '--platform', 'linux/arm64/v8', ref)) as { architecture: string; variant?: string };
      expect([config.architecture, config.variant]).toEqual(['arm64', 'v8']);
      // regctl reads every platform's manifest and config.
      await regctl('image', 'inspect', '--platform', 'linux/s390x', ref);
      await crane('validate', '--remote', ref);
    }
  });

  it('copies only linux/arm64 with `platforms`, as a new index that crane and regctl read', async () => {
    const { report, text } = await ferrySync(source, destination, {
      rule: { filters: { repositories: ['multi/**'] }, destinationNamespace: 'arm', platforms: ['linux/arm64'] },
    });
    expect(report.rules[0]!.status, text).toBe('ok');
    for (const format of ['oci', 'docker'] as const) {
      const ref = `${destination.host}/arm/multi/app:${format}`;
      const doc = JSON.parse(await crane('manifest', ref)) as IndexDoc;
      expect(doc.mediaType).toBe(format === 'oci' ? MT.ociIndex : MT.dockerList);
      expect(doc.manifests.map((m) => `${m.platform?.os}/${m.platform?.architecture}/${m.platform?.variant}`)).toEqual(['linux/arm64/v8']);
      expect(await crane('digest', ref)).not.toBe(indexes[format]);
      const inspected = JSON.parse(await regctl('image', 'inspect', '--platform', 'linux/arm64', ref)) as { architecture: string };
      expect(inspected.architecture).toBe('arm64');
      await expect(regctl('image', 'inspect', '--platform', 'linux/amd64', ref)).rejects.toThrow();
      await crane('validate', '--remote', ref);
    }
  });
});

describe('cosign sign --recursive on a multi-platform image', () => {
  it('the kept children stay verifiable after a platform-filtered copy; the whole index after an unfiltered one', async () => {
    await home.run('cosign', ['generate-key-pair']);
    const src = `${source.host}/multi/app@${indexes.oci}`;
    await home.run('cosign', ['sign', '--key', 'cosign.key', '--tlog-upload=false', '--allow-insecure-registry', '--recursive', src]);
    const children = (JSON.parse(await crane('manifest', src)) as IndexDoc).manifests;
    const arm = children.find((m) => m.platform?.architecture === 'arm64')!;

    const verify = (ref: string) => home.run('cosign', ['verify', '--key', 'cosign.pub', '--insecure-ignore-tlog', '--allow-insecure-registry', ref]);
    const plain = await ferrySync(source, destination, { rule: { filters: { repositories: ['multi/**'], tags: ['oci'] }, destinationNamespace: 'signed' } });
    expect(plain.report.rules[0]!.status, plain.text).toBe('ok');
    await verify(`${destination.host}/signed/multi/app@${indexes.oci}`);
    for (const child of children) await verify(`${destination.host}/signed/multi/app@${child.digest}`);

    const filtered = await ferrySync(source, destination, { rule: { filters: { repositories: ['multi/**'], tags: ['oci'] }, destinationNamespace: 'signed-arm', platforms: ['linux/arm64'] } });
    expect(filtered.report.rules[0]!.status, filtered.text).toBe('ok');
    await verify(`${destination.host}/signed-arm/multi/app@${arm.digest}`);
  });
});

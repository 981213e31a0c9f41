// Signatures, attestations and SBOMs made by the real tools: an image on distribution 2.8 (token auth,
// realm on the registry's host:port: see startSameOriginTokenRegistry)
// signed with `cosign sign --key` (no transparency log), attested with `cosign attest`, an SBOM
// attached with `oras attach` (the fallback tag: 2.8 has no Referrers API). After Ferry's copy,
// `cosign verify`, `cosign verify-attestation` and `oras discover` must pass at the destination:
//   - go-containerregistry's registry, which has the Referrers API (Basic auth);
//   - distribution v3, which has none (the fallback tag; Basic auth).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestRegistry, buildImage, pushImage } from '../helpers/index.js';
import { ferrySync } from './ferry.js';
import { ClientHome, type ReferrersRegistry, startDistributionV3, startReferrersRegistry, startSameOriginTokenRegistry } from './tools.js';

const SBOM_TYPE = 'application/spdx+json';

let source: TestRegistry;
let withApi: ReferrersRegistry;
let withoutApi: TestRegistry;
const home = new ClientHome();
const image = buildImage({ layers: [4096, 8192] });
const repo = 'team/signed';
let sbomDigest = '';

beforeAll(async () => {
  [source, withApi, withoutApi] = await Promise.all([startSameOriginTokenRegistry(), startReferrersRegistry(), startDistributionV3({ auth: 'basic' })]);
  home.addRegistry(source.host, { username: source.username!, password: source.password! });
  home.addRegistry(withApi.host, withApi);
  home.addRegistry(withoutApi.host, { username: withoutApi.username!, password: withoutApi.password! });

  await pushImage(source, repo, 'v1', image);
  const ref = `${source.host}/${repo}@${image.digest}`;
  await home.run('cosign', ['generate-key-pair']);
  await home.run('cosign', ['sign', '--key', 'cosign.key', '--tlog-upload=false', '--allow-insecure-registry', ref]);
  writeFileSync(join(home.dir, 'provenance.json'), JSON.stringify({ builder: { id: 'https://ferry.example/builder' }, buildType: 'interop', invocation: {} }));
  await home.run('cosign', ['attest', '--key', 'cosign.key', '--tlog-upload=false', '--allow-insecure-registry', '--type', 'slsaprovenance', '--predicate', 'provenance.json', ref]);
  writeFileSync(join(home.dir, 'sbom.spdx.json'), JSON.stringify({ spdxVersion: 'SPDX-2.3', SPDXID: 'SPDXRef-DOCUMENT', name: 'signed', dataLicense: 'CC0-1.0', packages: [] }));
  const attached = await home.run('oras', ['attach', '--plain-http', '--artifact-type', SBOM_TYPE, ref, `sbom.spdx.json:${SBOM_TYPE}`]);
  sbomDigest = /Digest:\s*(sha256:[0-9a-f]{64})/.exec(attached.stdout)?.[1] ?? '';
  expect(sbomDigest, attached.stdout).not.toBe('');
  expect(await discovered(ref)).toEqual([{ digest: sbomDigest, artifactType: SBOM_TYPE }]);
});

afterAll(async () => {
  await Promise.all([source?.stop(), withApi?.stop(), withoutApi?.stop()]);
  home.remove();
});

/** `oras discover` as JSON: the referrers' digests and artifact types. */
async function discovered(ref: string): Promise<{ digest: string; artifactType: string }[]> {
  const { stdout } = await home.run('oras', ['discover', '--plain-http', '--format', 'json', ref]);
  const doc = JSON.parse(stdout) as { manifests?: { digest: string; artifactType?: string }[]; referrers?: { digest: string; artifactType?: string }[] };
  return (doc.manifests ?? doc.referrers ?? []).map((m) => ({ digest: m.digest, artifactType: m.artifactType ?? '' }));
}

// go-containerregistry's Referrers API reports a referrer's artifactType as its config's media type
// (application/vnd.oci.empty.v1+json for oras' SBOM) even when the manifest has an artifactType: a
// quirk of that registry, not of the copy (the manifest's digest is the source's).
describe.each([
  ['a registry with the Referrers API (go-containerregistry)', () => withApi, 'application/vnd.oci.empty.v1+json'],
  ['a registry without it (distribution v3, fallback tag)', () => withoutApi, SBOM_TYPE],
])('cosign + oras -> Ferry -> %s', (_name, destination, listedType) => {
  it('verifies the signature and the attestation and lists the SBOM at the destination', async () => {
    const dst = destination();
    const { report, text } = await ferrySync(source, dst, { rule: { filters: { repositories: [repo] } } });
    expect(report.rules[0]!.status, text).toBe('ok');
    // The signature and attestation (cosign's .sig/.att tags) and the SBOM follow the image.
    expect(report.rules[0]!.referrers, text).toBeGreaterThanOrEqual(3);

    const ref = `${dst.host}/${repo}@${image.digest}`;
    const verified = await home.run('cosign', ['verify', '--key', 'cosign.pub', '--insecure-ignore-tlog', '--allow-insecure-registry', ref]);
    expect(JSON.parse(verified.stdout)).toHaveLength(1);
    await home.run('cosign', ['verify-attestation', '--key', 'cosign.pub', '--insecure-ignore-tlog', '--allow-insecure-registry', '--type', 'slsaprovenance', ref]);
    expect(await discovered(ref)).toEqual([{ digest: sbomDigest, artifactType: listedType }]);
    // oras reads the SBOM back by its digest.
    const sbom = await home.run('oras', ['manifest', 'fetch', '--plain-http', `${dst.host}/${repo}@${sbomDigest}`]);
    expect((JSON.parse(sbom.stdout) as { artifactType?: string }).artifactType).toBe(SBOM_TYPE);
  });
});

describe('oras attach on a registry with the Referrers API -> Ferry -> distribution v3 (fallback tag)', () => {
  it('lists the SBOM with its own artifactType at the destination, cosign verifies the signature', async () => {
    const subject = buildImage({ layers: [2048] });
    const from = 'api/signed';
    await pushImage(withApi, from, 'v1', subject);
    const ref = `${withApi.host}/${from}@${subject.digest}`;
    await home.run('cosign', ['sign', '--key', 'cosign.key', '--tlog-upload=false', '--allow-insecure-registry', ref]);
    const attached = await home.run('oras', ['attach', '--plain-http', '--artifact-type', SBOM_TYPE, ref, `sbom.spdx.json:${SBOM_TYPE}`]);
    const digest = /Digest:\s*(sha256:[0-9a-f]{64})/.exec(attached.stdout)?.[1];

    const { report, text } = await ferrySync(withApi, withoutApi, { rule: { filters: { repositories: [from] } } });
    expect(report.rules[0]!.status, text).toBe('ok');
    const dst = `${withoutApi.host}/${from}@${subject.digest}`;
    await home.run('cosign', ['verify', '--key', 'cosign.pub', '--insecure-ignore-tlog', '--allow-insecure-registry', dst]);
    expect(await discovered(dst)).toEqual([{ digest, artifactType: SBOM_TYPE }]);
  });
});

describe('cosign signatures as OCI 1.1 referrers (--registry-referrers-mode=oci-1-1)', () => {
  it.each([
    ['distribution 2.8 (fallback tag) -> go-containerregistry (Referrers API)', () => source, () => withApi],
    ['go-containerregistry (Referrers API) -> distribution v3 (fallback tag)', () => withApi, () => withoutApi],
  ])('%s: cosign verify --experimental-oci11 passes after the copy', async (_name, from, to) => {
    const subject = buildImage({ layers: [1024] });
    const name = `oci11/signed-${from() === source ? 'a' : 'b'}`;
    await pushImage(from(), name, 'v1', subject);
    const env = { COSIGN_EXPERIMENTAL: '1' };
    await home.run('cosign', ['sign', '--key', 'cosign.key', '--tlog-upload=false', '--allow-insecure-registry', '--registry-referrers-mode=oci-1-1', `${from().host}/${name}@${subject.digest}`], { env });
    const { report, text } = await ferrySync(from(), to(), { rule: { filters: { repositories: [name] } } });
    expect(report.rules[0]!.status, text).toBe('ok');
    expect(report.rules[0]!.referrers, text).toBeGreaterThanOrEqual(1);
    await home.run('cosign', ['verify', '--key', 'cosign.pub', '--insecure-ignore-tlog', '--allow-insecure-registry', '--experimental-oci11', `${to().host}/${name}@${subject.digest}`], { env });
  });
});

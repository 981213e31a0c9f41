// Ferry against registry implementations other than distribution 2.8, both ways, with the features
// as each implements them: go-containerregistry's registry (Basic auth; PATCH chunks kept in memory
// until the final PUT; one blob store for all repositories, so a blob pushed to one repository answers
// a HEAD in every other; it ignores mount requests) and distribution v3 (token
// auth with the realm on its host:port; cross-repository mounts). Each copy is checked by the real clients: `crane digest`
// and `regctl manifest get` read the manifests, `crane blob` every blob (whose sha256 we check).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import { type TestContent, type TestRegistry, buildImage, buildIndex, pushImage, randomBlob, sha256 } from '../helpers/index.js';
import { ferrySync } from './ferry.js';
import { ClientHome, type ReferrersRegistry, startDistributionV3, startReferrersRegistry, startSameOriginTokenRegistry } from './tools.js';

let ggcr: ReferrersRegistry;
let v3: TestRegistry;
const home = new ClientHome();

// Two images sharing a 600 KiB base layer, in two repositories: the second copy of the base is a mount
// where the destination has them; an index of two platforms; layers larger than the chunk size.
const base = randomBlob(600 * 1024);
const appA = buildImage({ layers: [base, 300 * 1024] });
const appB = buildImage({ layers: [base, 200 * 1024] });
const multi = buildIndex([buildImage({ layers: [150 * 1024], platform: { os: 'linux', architecture: 'amd64' } }), buildImage({ layers: [150 * 1024], platform: { os: 'linux', architecture: 'arm64' } })]);
const CHUNK = 128 * 1024;

/** Every blob of `content` (its children's included), read back with `crane blob` and hashed. */
async function validate(host: string, repo: string, content: TestContent): Promise<void> {
  for (const digest of content.blobs.keys()) {
    const { stdoutBytes } = await home.run('crane', ['blob', `${host}/${repo}@${digest}`]);
    expect(sha256(stdoutBytes)).toBe(digest);
  }
}

beforeAll(async () => {
  [ggcr, v3] = await Promise.all([startReferrersRegistry(), startSameOriginTokenRegistry(startDistributionV3)]);
  home.addRegistry(ggcr.host, ggcr);
  home.addRegistry(v3.host, { username: v3.username!, password: v3.password! });
});

afterAll(async () => {
  await Promise.all([ggcr?.stop(), v3?.stop()]);
  home.remove();
});

describe('distribution v3 -> go-containerregistry registry, chunked', () => {
  beforeAll(async () => {
    await pushImage(v3, 'apps/a', 'v1', appA);
    await pushImage(v3, 'apps/b', 'v1', appB);
    await pushImage(v3, 'apps/multi', 'v1', multi);
  });

  it('copies every artifact in PATCH chunks', async () => {
    const { report, text } = await ferrySync(v3, ggcr, { rule: { filters: { repositories: ['apps/**'] } }, transfer: { chunkSize: CHUNK, concurrency: 1 } });
    const rule = report.rules[0]!;
    expect(rule.status, text).toBe('ok');
    expect(rule.items.map((i) => [i.sourceRepository, i.status]).sort()).toEqual([
      ['apps/a', 'copied'],
      ['apps/b', 'copied'],
      ['apps/multi', 'copied'],
    ]);
    const requests = ggcr.logs().split('\n').filter((l) => / (POST|PATCH|PUT|HEAD) \/v2\/apps\//.test(l)).map((l) => l.replace(/^\S+ \S+ /, ''));
    // The 600 KiB base went up in PATCH chunks of at most 128 KiB (5 of them) and at most once per
    // repository: for its second repository Ferry asks for a mount, which this registry ignores (it
    // answers with a plain session), so the blob is sent again, unless a HEAD finds it first (this
    // registry keeps one blob store for all repositories). Either way every blob arrives intact.
    const baseDigest = encodeURIComponent(sha256(base));
    expect(requests.filter((l) => l.startsWith('PUT ') && l.includes(baseDigest)).length, text).toBeLessThanOrEqual(2);
    expect(requests.filter((l) => l.startsWith('PATCH ')).length, text).toBeGreaterThanOrEqual(5 + 6);
    for (const [repo, content] of [['apps/a', appA], ['apps/b', appB], ['apps/multi', multi]] as const) {
      expect((await home.run('crane', ['digest', `${ggcr.host}/${repo}:v1`])).stdout.trim()).toBe(content.digest);
      await validate(ggcr.host, repo, content);
    }
  });

  it('finds everything present on a re-run', async () => {
    const { report, text } = await ferrySync(v3, ggcr, { rule: { filters: { repositories: ['apps/**'] } }, transfer: { chunkSize: CHUNK } });
    expect(report.rules[0]!.items.map((i) => i.status), text).toEqual(['present', 'present', 'present']);
    expect(report.rules[0]!.blobs.uploaded, text).toBe(0);
  });
});

describe('go-containerregistry registry -> distribution v3 (token auth), mounts', () => {
  it('lists the source by its catalog, copies with a mount of the shared layer, and crane reads it back', async () => {
    const { report, text } = await ferrySync(ggcr, v3, { rule: { filters: { repositories: ['apps/**'] }, destinationNamespace: 'back' }, transfer: { concurrency: 1 } });
    const rule = report.rules[0]!;
    expect(rule.status, text).toBe('ok');
    expect(rule.items.map((i) => i.status), text).toEqual(['copied', 'copied', 'copied']);
    // The 600 KiB base layer is sent once, the second repository gets it by a mount.
    expect(rule.blobs.mounted, text).toBeGreaterThanOrEqual(1);
    for (const [repo, content] of [['back/apps/a', appA], ['back/apps/b', appB], ['back/apps/multi', multi]] as const) {
      const got = (await home.run('regctl', ['manifest', 'get', '--format', 'raw-body', `${v3.host}/${repo}:v1`])).stdoutBytes;
      expect(got.equals(content.manifest)).toBe(true);
      await validate(v3.host, repo, content);
    }
  });
});

describe('ferry check against them', () => {
  /** `ferry check` output (stdout) for a config with both registries. */
  async function check(probeRepository: string): Promise<string> {
    const file = join(home.dir, 'check.yaml');
    writeFileSync(
      file,
      [
        'registries:',
        `  ggcr: { url: "${ggcr.url}", username: ferry, password: s3cret }`,
        `  v3: { url: "${v3.url}", username: ferry, password: s3cret }`,
        'rules: [{ name: r, source: ggcr, destination: v3 }]',
        '',
      ].join('\n'),
    );
    const out: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      out.push(String(chunk));
      return true;
    });
    try {
      expect(await main(['check', '--config', file, '--probe-repository', probeRepository])).toBe(0);
    } finally {
      spy.mockRestore();
    }
    return out.join('');
  }

  it('reports the Referrers API of go-containerregistry and none on distribution v3', async () => {
    const text = await check('apps/a');
    expect(text).toMatch(/ggcr \(registry, [^)]*\): reachable, authenticated\n(?:  .*\n)*?  referrers: yes/);
    expect(text).toMatch(/v3 \(registry, [^)]*\): reachable, authenticated\n(?:  .*\n)*?  referrers: no/);
  });

  it('does not take the 404 NAME_UNKNOWN of a missing repository for "no Referrers API"', async () => {
    // go-containerregistry (like zot) answers 404 NAME_UNKNOWN for a repository it does not hold,
    // whether or not it has the API: Ferry used to print "referrers: no" here.
    const text = await check('probe/missing');
    expect(text).toMatch(/ggcr [^\n]*\n(?:  .*\n)*?  referrers: unknown: repository probe\/missing does not exist here/);
  });
});

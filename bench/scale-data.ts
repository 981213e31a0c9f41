// The scale benchmark's catalog: REPOS x TAGS small images written straight into distribution's
// filesystem storage layout (no pushes: 20k tags take seconds instead of an hour of uploads).
//
// Shape (issue #11): one 64 KiB base layer per team, shared by the team's 50 repositories; per tag
// one small unique layer (1 KiB) and a config (~300 bytes); Docker schema 2 manifests.
//
// distribution 2.8's layout under <root>/docker/registry/v2:
//   blobs/sha256/<hh>/<hex>/data                              every blob, manifests included
//   repositories/<name>/_layers/sha256/<hex>/link             "sha256:<hex>": the blob is in <name>
//   repositories/<name>/_manifests/revisions/sha256/<hex>/link
//   repositories/<name>/_manifests/tags/<tag>/current/link
//   repositories/<name>/_manifests/tags/<tag>/index/sha256/<hex>/link
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { blobChunks } from './dataset.js';

export const SCALE_FORMAT = 1;
export const REPOS_PER_TEAM = 50;
export const BASE_LAYER_BYTES = 64 * 1024;
export const UNIQUE_LAYER_BYTES = 1024;

const MT = {
  manifest: 'application/vnd.docker.distribution.manifest.v2+json',
  config: 'application/vnd.docker.container.image.v1+json',
  layer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

export interface ScaleCatalog {
  format: number;
  seed: string;
  repos: number;
  tags: number;
  /** Repository names, in order. */
  repositories: string[];
  /** Tag names (the same in every repository). */
  tagNames: string[];
  /** Manifest digests, [repository index][tag index]: for checking a destination. */
  digests: string[][];
  blobs: number;
  bytes: number;
}

export function repositoryName(r: number): string {
  return `team-${String(Math.floor(r / REPOS_PER_TEAM)).padStart(3, '0')}/svc-${String(r).padStart(5, '0')}`;
}

export function tagName(t: number): string {
  return `1.${Math.floor(t / 10)}.${t % 10}`;
}

function digestOf(bytes: Buffer): { digest: string; hex: string } {
  const hex = createHash('sha256').update(bytes).digest('hex');
  return { digest: `sha256:${hex}`, hex };
}

class Writer {
  private readonly root: string;
  private readonly written = new Set<string>();
  blobs = 0;
  bytes = 0;
  constructor(storage: string) {
    this.root = join(storage, 'docker', 'registry', 'v2');
  }
  blob(bytes: Buffer): string {
    const { digest, hex } = digestOf(bytes);
    if (this.written.has(hex)) return digest;
    const dir = join(this.root, 'blobs', 'sha256', hex.slice(0, 2), hex);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'data'), bytes);
    this.written.add(hex);
    this.blobs++;
    this.bytes += bytes.length;
    return digest;
  }
  link(repo: string, parts: string[], digest: string): void {
    const dir = join(this.root, 'repositories', repo, ...parts);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'link'), digest);
  }
  layerLink(repo: string, digest: string): void {
    this.link(repo, ['_layers', 'sha256', digest.slice(7)], digest);
  }
}

/**
 * Writes the catalog into `storage` (a fresh directory) unless `markerDir/scale.json` says it is
 * already there with the same seed and shape. The registry must not be running on it meanwhile.
 */
export function generateScaleCatalog(storage: string, markerDir: string, seed: string, repos: number, tags: number, log: (s: string) => void): ScaleCatalog {
  const marker = join(markerDir, 'scale.json');
  if (existsSync(marker)) {
    const c = JSON.parse(readFileSync(marker, 'utf8')) as ScaleCatalog;
    if (c.format === SCALE_FORMAT && c.seed === seed && c.repos === repos && c.tags === tags && existsSync(join(storage, 'docker'))) return c;
  }
  const started = Date.now();
  rmSync(storage, { recursive: true, force: true });
  mkdirSync(storage, { recursive: true });
  const w = new Writer(storage);
  const tagNames = Array.from({ length: tags }, (_, t) => tagName(t));
  const repositories: string[] = [];
  const digests: string[][] = [];
  const bases = new Map<number, { digest: string; size: number }>();
  for (let r = 0; r < repos; r++) {
    const repo = repositoryName(r);
    repositories.push(repo);
    const team = Math.floor(r / REPOS_PER_TEAM);
    let base = bases.get(team);
    if (!base) {
      const bytes = Buffer.concat([...blobChunks(seed, `base-${team}`, BASE_LAYER_BYTES)]);
      base = { digest: w.blob(bytes), size: bytes.length };
      bases.set(team, base);
    }
    w.layerLink(repo, base.digest);
    const row: string[] = [];
    for (const tag of tagNames) {
      const layer = Buffer.concat([...blobChunks(seed, `layer-${repo}-${tag}`, UNIQUE_LAYER_BYTES)]);
      const layerDigest = w.blob(layer);
      w.layerLink(repo, layerDigest);
      const config = Buffer.from(
        JSON.stringify({
          architecture: 'amd64',
          os: 'linux',
          created: '2024-01-01T00:00:00Z',
          config: { Cmd: [`/srv/${repo}`], Labels: { 'org.opencontainers.image.version': tag } },
          rootfs: { type: 'layers', diff_ids: [base.digest, layerDigest] },
        }),
      );
      const configDigest = w.blob(config);
      w.layerLink(repo, configDigest);
      const manifest = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: MT.manifest,
          config: { mediaType: MT.config, digest: configDigest, size: config.length },
          layers: [
            { mediaType: MT.layer, digest: base.digest, size: base.size },
            { mediaType: MT.layer, digest: layerDigest, size: layer.length },
          ],
        }),
      );
      const digest = w.blob(manifest);
      w.link(repo, ['_manifests', 'revisions', 'sha256', digest.slice(7)], digest);
      w.link(repo, ['_manifests', 'tags', tag, 'current'], digest);
      w.link(repo, ['_manifests', 'tags', tag, 'index', 'sha256', digest.slice(7)], digest);
      row.push(digest);
    }
    digests.push(row);
    if ((r + 1) % 200 === 0) log(`  scale catalog: ${r + 1}/${repos} repositories written`);
  }
  const catalog: ScaleCatalog = { format: SCALE_FORMAT, seed, repos, tags, repositories, tagNames, digests, blobs: w.blobs, bytes: w.bytes };
  mkdirSync(markerDir, { recursive: true });
  writeFileSync(marker, JSON.stringify(catalog));
  log(`  scale catalog: ${repos} x ${tags} = ${repos * tags} tags, ${w.blobs} blobs (${(w.bytes / 1e6).toFixed(1)} MB) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return catalog;
}

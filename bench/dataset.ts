// The benchmark data set: ~16 repositories x 3 tags with shared base layers, ~600 MB of unique blobs
// at BENCH_SCALE=1, generated deterministically from a seed and written once into a source registry
// whose storage is cached under bench/.data/ (a later run with the same seed and scale reuses it).
//
// Bytes: AES-256-CTR keystream keyed by sha512(seed, blob id): incompressible (sizes on the wire =
// sizes on disk), reproducible, and ~1-2 GB/s on one core, so generating 600 MB takes seconds (most of
// the seeding time is the local registry writing files). Layers are wrapped in a valid gzip stream of
// deflate "stored" blocks (what `gzip -0` would write): a layer that says tar+gzip but is not gzip
// makes skopeo treat it as uncompressed and recompress it, which would change digests and turn the
// comparison into a gzip benchmark.
//
// Layout (sizes at scale 1, each varied +-25% by a seeded PRNG):
//   4 "OS" base layers (48/32/24/16 MB), each shared by 4 repositories      ~120 MB
//   8 "runtime" layers (~12 MB), each shared by 2 repositories               ~ 96 MB
//   16 "dependencies" layers (~10 MB), one per repository, shared by its 3 tags  ~160 MB
//   48 x 2 application layers (~4 MB + ~0.6 MB), one pair per tag           ~220 MB
//   48 image configs (~1 KB)
// Half the repositories use Docker schema 2 media types, half OCI.
import { createCipheriv, createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { type RawRegistry, mapLimit, sha256 } from './raw.js';

const CHUNK = 1024 * 1024;
const ZEROS = Buffer.alloc(CHUNK);

function keyFor(seed: string, id: string): { key: Buffer; iv: Buffer } {
  const h = createHash('sha512').update(`${seed}\0${id}`).digest();
  return { key: h.subarray(0, 32), iv: h.subarray(32, 48) };
}

/** The deterministic bytes of blob `id`, in chunks of up to 1 MiB. */
export function* blobChunks(seed: string, id: string, size: number): Generator<Buffer> {
  const { key, iv } = keyFor(seed, id);
  const cipher = createCipheriv('aes-256-ctr', key, iv);
  for (let left = size; left > 0; left -= CHUNK) {
    yield cipher.update(left >= CHUNK ? ZEROS : ZEROS.subarray(0, left));
  }
}

const STORED_MAX = 65535;
const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0xff]);

/** Size of the gzip stream `layerChunks` writes for `raw` bytes of content. */
export function layerSize(raw: number): number {
  return GZIP_HEADER.length + Math.max(1, Math.ceil(raw / STORED_MAX)) * 5 + raw + 8;
}

/** A gzip stream (stored deflate blocks) of `raw` deterministic bytes, in chunks of ~1 MiB. */
export function* layerChunks(seed: string, id: string, raw: number): Generator<Buffer> {
  yield GZIP_HEADER;
  let crc = 0;
  let done = 0;
  if (raw === 0) yield Buffer.from([0x01, 0x00, 0x00, 0xff, 0xff]);
  let pending: Buffer = Buffer.alloc(0);
  const chunks = blobChunks(seed, id, raw);
  while (done < raw) {
    // Gather at least one full stored block (or the rest).
    while (pending.length < STORED_MAX && done + pending.length < raw) {
      const next = chunks.next();
      if (next.done) break;
      pending = pending.length ? Buffer.concat([pending, next.value]) : next.value;
    }
    const parts: Buffer[] = [];
    let off = 0;
    while (pending.length - off >= STORED_MAX || (done + pending.length === raw && off < pending.length)) {
      const len = Math.min(STORED_MAX, pending.length - off);
      const data = pending.subarray(off, off + len);
      const last = done + off + len === raw;
      const head = Buffer.alloc(5);
      head[0] = last ? 1 : 0;
      head.writeUInt16LE(len, 1);
      head.writeUInt16LE(~len & 0xffff, 3);
      parts.push(head, data);
      crc = crc32(data, crc);
      off += len;
    }
    done += off;
    pending = pending.subarray(off);
    yield Buffer.concat(parts);
  }
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc >>> 0, 0);
  trailer.writeUInt32LE(raw % 2 ** 32, 4);
  yield trailer;
}

export function layerBytes(seed: string, id: string, raw: number): Buffer {
  return Buffer.concat([...layerChunks(seed, id, raw)]);
}

export function layerDigest(seed: string, id: string, raw: number): string {
  const h = createHash('sha256');
  for (const c of layerChunks(seed, id, raw)) h.update(c);
  return `sha256:${h.digest('hex')}`;
}

/** A small seeded PRNG (mulberry32) for sizes. */
function prng(seed: string): () => number {
  let a = createHash('sha256').update(seed).digest().readUInt32LE(0);
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface LayerSpec {
  id: string;
  size: number;
}
interface ImageSpec {
  repo: string;
  tag: string;
  format: 'docker' | 'oci';
  layers: LayerSpec[];
}

export const REPOSITORIES = 16;
export const TAGS = ['1.0.0', '1.1.0', '2.0.0'];
const MB = 1_000_000;

export function planDataset(seed: string, scale: number): ImageSpec[] {
  const rand = prng(`${seed}/sizes`);
  const size = (mb: number): number => Math.max(1024, Math.round(mb * MB * scale * (0.75 + 0.5 * rand())));
  const bases = [48, 32, 24, 16].map((mb, i) => ({ id: `base-${i}`, size: size(mb) }));
  const runtimes = Array.from({ length: 8 }, (_, i) => ({ id: `runtime-${i}`, size: size(12) }));
  const images: ImageSpec[] = [];
  for (let r = 0; r < REPOSITORIES; r++) {
    const team = ['platform', 'payments', 'search', 'web'][r % 4]!;
    const repo = `${team}/svc-${String(r).padStart(2, '0')}`;
    const deps = { id: `deps-${r}`, size: size(10) };
    for (const tag of TAGS) {
      images.push({
        repo,
        tag,
        format: r % 2 === 0 ? 'docker' : 'oci',
        layers: [bases[r % 4]!, runtimes[r % 8]!, deps, { id: `app-${r}-${tag}`, size: size(4) }, { id: `assets-${r}-${tag}`, size: size(0.6) }],
      });
    }
  }
  return images;
}

export interface BlobRef {
  digest: string;
  size: number;
}

export interface DatasetImage {
  repo: string;
  tag: string;
  digest: string;
  mediaType: string;
  blobs: BlobRef[];
}

/** Bumped whenever the generated bytes or layout change, so cached sources are regenerated. */
export const DATASET_FORMAT = 2;

export interface Dataset {
  format: number;
  seed: string;
  scale: number;
  images: DatasetImage[];
  /** Each unique blob once, with the first repository (in data set order) holding it. */
  unique: (BlobRef & { repo: string })[];
  uniqueBytes: number;
  repositories: string[];
}

const MT = {
  docker: { manifest: 'application/vnd.docker.distribution.manifest.v2+json', config: 'application/vnd.docker.container.image.v1+json', layer: 'application/vnd.docker.image.rootfs.diff.tar.gzip' },
  oci: { manifest: 'application/vnd.oci.image.manifest.v1+json', config: 'application/vnd.oci.image.config.v1+json', layer: 'application/vnd.oci.image.layer.v1.tar+gzip' },
} as const;

export function summarizeDataset(seed: string, scale: number, images: DatasetImage[]): Dataset {
  const seen = new Map<string, BlobRef & { repo: string }>();
  for (const img of images) for (const b of img.blobs) if (!seen.has(b.digest)) seen.set(b.digest, { ...b, repo: img.repo });
  const unique = [...seen.values()];
  return {
    format: DATASET_FORMAT,
    seed,
    scale,
    images,
    unique,
    uniqueBytes: unique.reduce((n, b) => n + b.size, 0),
    repositories: [...new Set(images.map((i) => i.repo))],
  };
}

/**
 * Writes the data set into `registry` (anonymous local registry, ideally over a cached storage dir)
 * unless `markerDir` holds a marker saying it is already there. Returns the data set description.
 */
export async function seedDataset(registry: RawRegistry, seed: string, scale: number, markerDir: string, log: (s: string) => void): Promise<Dataset> {
  const marker = join(markerDir, 'dataset.json');
  if (existsSync(marker)) {
    const ds = JSON.parse(readFileSync(marker, 'utf8')) as Dataset;
    if (ds.format === DATASET_FORMAT && ds.seed === seed && ds.scale === scale) {
      // Cheap sanity check that the storage really holds it.
      const first = ds.images[0]!;
      const m = await registry.getManifest(first.repo, first.tag);
      if (m?.digest === first.digest) return ds;
    }
    log('cached data set does not match; regenerating');
  }
  const spec = planDataset(seed, scale);
  const started = Date.now();
  // Layers: generate + hash once, upload to the first repository, mount everywhere else.
  const where = new Map<string, { digest: string; size: number; repos: Set<string> }>();
  const layerJobs: LayerSpec[] = [];
  const seenIds = new Set<string>();
  for (const img of spec) for (const l of img.layers) if (!seenIds.has(l.id)) (seenIds.add(l.id), layerJobs.push(l));
  const firstRepo = new Map<string, string>();
  for (const img of spec) for (const l of img.layers) if (!firstRepo.has(l.id)) firstRepo.set(l.id, img.repo);
  let done = 0;
  await mapLimit(layerJobs, 4, async (l) => {
    const bytes = layerBytes(seed, l.id, l.size);
    const digest = sha256(bytes);
    const repo = firstRepo.get(l.id)!;
    if (!(await registry.headBlob(repo, digest))) await registry.upload(repo, digest, bytes.length, bytes);
    where.set(l.id, { digest, size: bytes.length, repos: new Set([repo]) });
    done += l.size;
    if (layerJobs.indexOf(l) % 20 === 0) log(`  seeding: ${(done / MB).toFixed(0)} MB of layers written`);
  });
  const images: DatasetImage[] = [];
  for (const img of spec) {
    const mt = MT[img.format];
    const layers = img.layers.map((l) => where.get(l.id)!);
    for (const l of layers) {
      if (!l.repos.has(img.repo)) {
        if (!(await registry.mount(img.repo, l.digest, [...l.repos][0]!))) {
          const spec = img.layers[layers.indexOf(l)]!;
          await registry.upload(img.repo, l.digest, l.size, Readable.from(layerChunks(seed, spec.id, spec.size)));
        }
        l.repos.add(img.repo);
      }
    }
    const config = Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        created: '2024-01-01T00:00:00Z',
        config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: [`/srv/${img.repo}`], Labels: { 'org.opencontainers.image.version': img.tag } },
        rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
        history: layers.map((_, i) => ({ created: '2024-01-01T00:00:00Z', created_by: `bench layer ${i}` })),
      }),
    );
    const configDigest = sha256(config);
    if (!(await registry.headBlob(img.repo, configDigest))) await registry.upload(img.repo, configDigest, config.length, config);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: mt.manifest,
        config: { mediaType: mt.config, digest: configDigest, size: config.length },
        layers: layers.map((l) => ({ mediaType: mt.layer, digest: l.digest, size: l.size })),
      }),
    );
    const digest = await registry.putManifest(img.repo, img.tag, manifest, mt.manifest);
    images.push({
      repo: img.repo,
      tag: img.tag,
      digest,
      mediaType: mt.manifest,
      blobs: [{ digest: configDigest, size: config.length }, ...layers.map((l) => ({ digest: l.digest, size: l.size }))],
    });
  }
  const ds = summarizeDataset(seed, scale, images);
  mkdirSync(markerDir, { recursive: true });
  writeFileSync(marker, JSON.stringify(ds, null, 1));
  log(`  seeded ${ds.images.length} images, ${ds.unique.length} unique blobs, ${(ds.uniqueBytes / MB).toFixed(0)} MB in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return ds;
}

/** One image with a single big layer, for the memory measurement (cached like the data set). */
export async function seedBigImage(registry: RawRegistry, seed: string, size: number, markerDir: string, log: (s: string) => void): Promise<Dataset> {
  const marker = join(markerDir, 'big.json');
  if (existsSync(marker)) {
    const ds = JSON.parse(readFileSync(marker, 'utf8')) as Dataset;
    const first = ds.images[0];
    if (ds.format === DATASET_FORMAT && first && first.blobs[1]?.size === layerSize(size)) {
      const m = await registry.getManifest(first.repo, first.tag);
      if (m?.digest === first.digest) return ds;
    }
    rmSync(marker, { force: true });
  }
  const started = Date.now();
  const repo = 'big/layer';
  const id = `big-${size}`;
  const digest = layerDigest(seed, id, size);
  if (!(await registry.headBlob(repo, digest))) await registry.upload(repo, digest, layerSize(size), Readable.from(layerChunks(seed, id, size)));
  const mt = MT.oci;
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [digest] } }));
  const configDigest = sha256(config);
  if (!(await registry.headBlob(repo, configDigest))) await registry.upload(repo, configDigest, config.length, config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: mt.manifest,
      config: { mediaType: mt.config, digest: configDigest, size: config.length },
      layers: [{ mediaType: mt.layer, digest, size: layerSize(size) }],
    }),
  );
  const mdigest = await registry.putManifest(repo, 'v1', manifest, mt.manifest);
  const ds = summarizeDataset(seed, 1, [
    {
      repo,
      tag: 'v1',
      digest: mdigest,
      mediaType: mt.manifest,
      blobs: [
        { digest: configDigest, size: config.length },
        { digest, size: layerSize(size) },
      ],
    },
  ]);
  mkdirSync(markerDir, { recursive: true });
  writeFileSync(marker, JSON.stringify(ds, null, 1));
  log(`  seeded a ${(size / MB).toFixed(0)} MB layer in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return ds;
}

/**
 * Compares a destination with the data set: every tag's manifest digest, and every blob present.
 * Returns the differences (empty = identical).
 */
export async function compareDestination(dest: RawRegistry, ds: Dataset, mapRepo: (repo: string) => string): Promise<string[]> {
  const problems: string[] = [];
  await mapLimit(ds.images, 8, async (img) => {
    const repo = mapRepo(img.repo);
    const m = await dest.getManifest(repo, img.tag);
    if (!m) problems.push(`${repo}:${img.tag} missing`);
    else if (m.digest !== img.digest) problems.push(`${repo}:${img.tag} is ${m.digest}, expected ${img.digest}`);
    for (const b of img.blobs) if (!(await dest.headBlob(repo, b.digest))) problems.push(`${repo}@${b.digest} missing`);
  });
  return problems;
}

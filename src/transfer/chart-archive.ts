// A ChartMuseum chart archive (.tgz) read as it downloads.
//
// The archive is read as a stream while it downloads (zlib → tar-stream; nothing is unpacked to
// disk; Chart.yaml and requirements.yaml are the only entries kept, at most 1 MiB each), and the whole
// archive is gunzipped and walked, so a truncated or corrupt archive fails before anything is pushed.
// The .tgz bytes are held in memory to be pushed as a blob once the manifest is known; charts are
// small (ChartMuseum's default upload cap is 20 MiB), and anything larger than `maxChartBytes`
// (64 MiB) fails that chart with a clear error.
//
// Bombs: the compressed cap says nothing about what gunzip makes of it (1 MiB of gzip can inflate to
// 1 GiB), so the tar stream between gunzip and tar-stream is counted too and capped at
// `maxUnpackedBytes` (128 MiB), and its headers are checked before tar-stream sees them: tar-stream
// buffers a PAX or GNU long-name header whole before it decodes it (up to 4 MiB each, its own arbitrary
// limit), so such headers larger than 64 KiB (a helm archive has none beyond a few hundred bytes) fail
// the chart first. `TarBounds` follows the tar framing the way tar-stream does (null blocks, typeflags,
// base-256 sizes, PAX `size` overrides, directories without data) to know where each header starts.
import { createHash } from 'node:crypto';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { createRequire } from 'node:module';
import type tarStream from 'tar-stream';
import { ChartError, chartMetadata } from './chart-metadata.js';

export const MAX_CHART_BYTES = 64 * 1024 * 1024;
export const MAX_UNPACKED_CHART_BYTES = 128 * 1024 * 1024;
export const MAX_TAR_LONG_HEADER_BYTES = 64 * 1024;
const MAX_METADATA_FILE_BYTES = 1024 * 1024;

export interface ChartArchive {
  /** The .tgz exactly as downloaded. */
  bytes: Buffer;
  digest: string;
  /** helm's chart.Metadata as a JSON-ready object, fields in helm's order. */
  metadata: Record<string, unknown>;
  /** RFC 3339 UTC modification time of Chart.yaml in the archive, when it has one. */
  created?: string | undefined;
}

/**
 * Reads a chart archive from a stream: counts and hashes it (bounded by maxBytes), gunzips and walks
 * every tar entry as it arrives, keeps `<top>/Chart.yaml` and `<top>/requirements.yaml`. Throws
 * ChartError for anything helm could not load.
 */
export async function readChartArchive(
  source: AsyncIterable<Uint8Array> | Readable | Buffer,
  opts: { maxBytes?: number | undefined; maxUnpackedBytes?: number | undefined } = {},
): Promise<ChartArchive> {
  const maxBytes = opts.maxBytes ?? MAX_CHART_BYTES;
  const chunks: Buffer[] = [];
  const hash = createHash('sha256');
  let size = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
      size += chunk.length;
      if (size > maxBytes) return done(new ChartError(`chart archive is larger than ${maxBytes} bytes (the limit for ChartMuseum charts)`));
      chunks.push(chunk);
      hash.update(chunk);
      done(null, chunk);
    },
  });
  // Loaded with the first ChartMuseum chart: most runs copy none.
  const extract = (createRequire(import.meta.url)('tar-stream') as typeof tarStream).extract();
  const input = Buffer.isBuffer(source) ? Readable.from([source]) : source instanceof Readable ? source : Readable.from(source);
  const piping = pipeline(input, meter, createGunzip(), new TarBounds(opts.maxUnpackedBytes ?? MAX_UNPACKED_CHART_BYTES), extract);
  piping.catch(() => undefined); // reported through the entry loop or awaited below
  const files = new Map<string, { data: Buffer; mtime?: Date | undefined }>();
  const tops = new Set<string>();
  try {
    for await (const entry of extract) {
      const parts = entry.header.name.split('/').filter((p) => p !== '' && p !== '.');
      if (parts.length) tops.add(parts[0]!);
      const file = parts.slice(1).join('/');
      if (entry.header.type === 'file' && (file === 'Chart.yaml' || file === 'requirements.yaml') && !files.has(file)) {
        const data: Buffer[] = [];
        let n = 0;
        for await (const chunk of entry as AsyncIterable<Buffer>) {
          n += chunk.length;
          if (n > MAX_METADATA_FILE_BYTES) throw new ChartError(`${entry.header.name} is larger than ${MAX_METADATA_FILE_BYTES} bytes`);
          data.push(chunk);
        }
        files.set(file, { data: Buffer.concat(data), mtime: entry.header.mtime });
      } else {
        entry.resume();
      }
    }
    await piping;
  } catch (err) {
    if (err instanceof ChartError) throw err;
    throw new ChartError(`corrupt chart archive: ${(err as Error).message}`, { cause: err });
  }
  if (size === 0) throw new ChartError('corrupt chart archive: empty');
  const chartYaml = files.get('Chart.yaml');
  if (!chartYaml) throw new ChartError(`no Chart.yaml in the archive's top directory${tops.size ? ` (${[...tops].slice(0, 3).join(', ')})` : ''}`);
  const metadata = chartMetadata(chartYaml.data, files.get('requirements.yaml')?.data);
  const mtime = chartYaml.mtime?.getTime();
  return {
    bytes: Buffer.concat(chunks),
    digest: `sha256:${hash.digest('hex')}`,
    metadata,
    created: mtime && mtime > 0 ? rfc3339(new Date(mtime)) : undefined,
  };
}

/** Go's time.RFC3339 of a UTC time: 2006-01-02T15:04:05Z. */
function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d+Z$/, 'Z');
}

// ---------------------------------------------------------------------------------------------------
// Bounds on the unpacked tar stream

const BLOCK = 512;
const LONG_HEADER_TYPES = new Set([72 /* x: PAX */, 55 /* g: PAX global */, 27 /* K: GNU long link */, 28 /* L: GNU long name */, 30 /* N */]);

/**
 * Passes the tar stream through unchanged, counting it (at most `maxUnpacked` bytes) and refusing a
 * long header (PAX, GNU long name) larger than MAX_TAR_LONG_HEADER_BYTES before tar-stream buffers it.
 * Holds at most one 512-byte block or one bounded PAX header of its own.
 */
export class TarBounds extends Transform {
  private unpacked = 0;
  /** Bytes of entry data (and padding) still to pass before the next header. */
  private skip = 0;
  private header = Buffer.alloc(0);
  /** A PAX header's bytes being collected (its `size` record frames the next entry), and how many are due. */
  private pax: { global: boolean; chunks: Buffer[]; due: number; padding: number } | undefined;
  private paxGlobal: Record<string, string> | undefined;
  private paxLocal: Record<string, string> | undefined;

  constructor(private readonly maxUnpacked: number) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.unpacked += chunk.length;
    if (this.unpacked > this.maxUnpacked) return done(new ChartError(`chart archive unpacks to more than ${this.maxUnpacked} bytes (the limit for ChartMuseum charts): a gzip bomb?`));
    try {
      this.scan(chunk);
    } catch (err) {
      return done(err as Error);
    }
    done(null, chunk);
  }

  private scan(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - at);
        this.skip -= n;
        at += n;
        continue;
      }
      if (this.pax) {
        const n = Math.min(this.pax.due, chunk.length - at);
        this.pax.chunks.push(chunk.subarray(at, at + n));
        this.pax.due -= n;
        at += n;
        if (this.pax.due === 0) {
          const records = decodePax(Buffer.concat(this.pax.chunks));
          if (this.pax.global) this.paxGlobal = records;
          else this.paxLocal = { ...this.paxGlobal, ...records };
          this.skip = this.pax.padding;
          this.pax = undefined;
        }
        continue;
      }
      const n = Math.min(BLOCK - this.header.length, chunk.length - at);
      this.header = Buffer.concat([this.header, chunk.subarray(at, at + n)]);
      at += n;
      if (this.header.length === BLOCK) {
        this.onHeader(this.header);
        this.header = Buffer.alloc(0);
      }
    }
  }

  private onHeader(block: Buffer): void {
    if (checksumOf(block) === 8 * 32) return; // a null block (end of archive): tar-stream skips it too
    const typeflag = block[156] === 0 ? 0 : block[156]! - 48;
    let size = octal(block.subarray(124, 136));
    if (!Number.isSafeInteger(size) || size < 0) throw new ChartError('corrupt chart archive: invalid tar entry size');
    if (LONG_HEADER_TYPES.has(typeflag)) {
      if (size > MAX_TAR_LONG_HEADER_BYTES) {
        throw new ChartError(`chart archive has a ${typeflag === 72 || typeflag === 55 ? 'PAX' : 'GNU long name'} header of ${size} bytes (more than ${MAX_TAR_LONG_HEADER_BYTES})`);
      }
      const padding = (BLOCK - (size % BLOCK)) % BLOCK;
      if (typeflag === 72 || typeflag === 55) this.pax = { global: typeflag === 55, chunks: [], due: size, padding };
      else this.skip = size + padding;
      if (this.pax && size === 0) {
        this.pax = undefined;
        this.skip = padding;
      }
      return;
    }
    if (this.paxLocal) {
      // tar-stream applies the merged PAX records to the next entry only (and only when it has local ones).
      if (this.paxLocal.size) size = parseInt(this.paxLocal.size, 10);
      this.paxLocal = undefined;
      if (!Number.isSafeInteger(size) || size < 0) throw new ChartError('corrupt chart archive: invalid PAX size');
    }
    const name = block.subarray(0, 100);
    const end = name.indexOf(0);
    const directory = typeflag === 5 || (typeflag === 0 && name[(end === -1 ? 100 : end) - 1] === 0x2f);
    // As tar-stream: a directory entry carries no data whatever its size field says.
    if (size === 0 || directory) return;
    this.skip = size + ((BLOCK - (size % BLOCK)) % BLOCK);
  }
}

/** The tar checksum as tar-stream computes it (the checksum field counted as spaces). */
function checksumOf(block: Buffer): number {
  let sum = 8 * 32;
  for (let i = 0; i < 148; i++) sum += block[i]!;
  for (let i = 156; i < BLOCK; i++) sum += block[i]!;
  return sum;
}

/** A numeric tar field: octal text (leading spaces/NULs allowed) or base-256 (high bit set). */
function octal(field: Buffer): number {
  if (field[0]! & 0x80) {
    if (field[0] !== 0x80) return -1; // negative (0xff) or malformed
    let n = 0;
    for (let i = 1; i < field.length; i++) n = n * 256 + field[i]!;
    return n;
  }
  let i = 0;
  while (i < field.length && field[i] === 32) i++;
  let end = field.indexOf(32, i);
  if (end === -1) end = field.length;
  while (i < end && field[i] === 0) i++;
  if (end === i) return 0;
  return parseInt(field.subarray(i, end).toString('latin1'), 8);
}

/** PAX records `<len> <key>=<value>\n`, decoded as tar-stream does. */
function decodePax(buf: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  while (buf.length) {
    let i = 0;
    while (i < buf.length && buf[i] !== 32) i++;
    const len = parseInt(buf.subarray(0, i).toString(), 10);
    if (!len) return out;
    const record = buf.subarray(i + 1, len - 1).toString();
    const eq = record.indexOf('=');
    if (eq === -1) return out;
    out[record.slice(0, eq)] = record.slice(eq + 1);
    buf = buf.subarray(len);
  }
  return out;
}

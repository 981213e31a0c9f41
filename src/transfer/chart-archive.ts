// A ChartMuseum chart archive (.tgz) read as it downloads.
//
// The archive is read as a stream while it downloads (zlib → tar-stream; nothing is unpacked to
// disk; Chart.yaml and requirements.yaml are the only entries kept, at most 1 MiB each), and the whole
// archive is gunzipped and walked, so a truncated or corrupt archive fails before anything is pushed.
// The .tgz bytes are held in memory to be pushed as a blob once the manifest is known; charts are
// small (ChartMuseum's default upload cap is 20 MiB), and anything larger than `maxChartBytes`
// (64 MiB) fails that chart with a clear error.
import { createHash } from 'node:crypto';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tarStream from 'tar-stream';
import { ChartError, chartMetadata } from './chart-metadata.js';

export const MAX_CHART_BYTES = 64 * 1024 * 1024;
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
export async function readChartArchive(source: AsyncIterable<Uint8Array> | Readable | Buffer, opts: { maxBytes?: number } = {}): Promise<ChartArchive> {
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
  const extract = tarStream.extract();
  const input = Buffer.isBuffer(source) ? Readable.from([source]) : source instanceof Readable ? source : Readable.from(source);
  const piping = pipeline(input, meter, createGunzip(), extract);
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

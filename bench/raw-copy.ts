// The lower bound: every unique blob streamed straight from the source to the destination, N at a
// time, by the raw client in bench/raw.ts (GET from the source piped into POST + monolithic PUT at the
// destination, token auth). No manifests, no HEAD checks, no mounts, no digest verification: only the
// bytes that any copier must move. Run as its own process (like Ferry) so it does not share an event
// loop with the WAN emulator in the benchmark process.
//
//   node --import tsx bench/raw-copy.ts JOB.json   → prints {"ms":..., "bytes":..., "blobs":...}
import { readFileSync } from 'node:fs';
import { type Endpoint, RawRegistry, mapLimit } from './raw.js';

export interface RawCopyJob {
  source: Endpoint;
  destination: Endpoint;
  concurrency: number;
  blobs: { digest: string; size: number; sourceRepo: string; destinationRepo: string }[];
}

export interface RawCopyResult {
  ms: number;
  bytes: number;
  blobs: number;
  tokenRequests: number;
}

async function main(file: string): Promise<void> {
  const job = JSON.parse(readFileSync(file, 'utf8')) as RawCopyJob;
  const src = new RawRegistry(job.source);
  const dst = new RawRegistry(job.destination);
  const started = performance.now();
  let bytes = 0;
  await mapLimit(job.blobs, job.concurrency, async (b) => {
    const { body } = await src.getBlob(b.sourceRepo, b.digest);
    await dst.upload(b.destinationRepo, b.digest, b.size, body);
    bytes += b.size;
  });
  const result: RawCopyResult = { ms: performance.now() - started, bytes, blobs: job.blobs.length, tokenRequests: dst.tokenRequests };
  await Promise.all([src.close(), dst.close()]);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main(process.argv[2] ?? '').catch((err: unknown) => {
  process.stderr.write(`raw-copy: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});

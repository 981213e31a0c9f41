// The minimal client of the scale benchmark (issue #11): the fewest requests a correct copier of a
// catalog of small images can make, with C tags in flight. Its own process, like Ferry.
//
//   full:  per repository one tags/list at the source; per tag one manifest GET at the source; every
//          blob the first time it is needed: GET at the source, POST + PUT at the destination; a blob
//          this run already put into another repository (the team's base layer): mounted once per
//          repository; one manifest PUT. No destination HEADs: the destination is known to be empty.
//   noop:  per repository one tags/list at the source; per tag one manifest HEAD at the source and
//          one at the destination, digests compared.
//
//   node --import tsx bench/minimal-client.ts JOB.json  → prints {"ms":..., "tags":..., ...}
import { readFileSync } from 'node:fs';
import { type Endpoint, RawRegistry } from './raw.js';

export interface MinimalJob {
  mode: 'full' | 'noop';
  source: Endpoint;
  destination: Endpoint;
  concurrency: number;
  repositories: string[];
}

export interface MinimalResult {
  ms: number;
  tags: number;
  copied: number;
  present: number;
  blobsUploaded: number;
  blobsMounted: number;
}

interface Descriptor {
  digest: string;
  size: number;
}

async function main(file: string): Promise<void> {
  const job = JSON.parse(readFileSync(file, 'utf8')) as MinimalJob;
  const src = new RawRegistry(job.source);
  const dst = new RawRegistry(job.destination);
  const started = performance.now();
  const result: MinimalResult = { ms: 0, tags: 0, copied: 0, present: 0, blobsUploaded: 0, blobsMounted: 0 };
  /** digest → the upload that first put it at the destination, and where. */
  const uploaded = new Map<string, { repo: string; done: Promise<void> }>();
  /** repo|digest → its mount (once per repository). */
  const mounted = new Map<string, Promise<void>>();

  const copyBlob = async (repo: string, d: Descriptor): Promise<void> => {
    const first = uploaded.get(d.digest);
    if (first && first.repo !== repo) {
      const key = `${repo}|${d.digest}`;
      let m = mounted.get(key);
      if (!m) {
        m = (async () => {
          await first.done;
          if (await dst.mount(repo, d.digest, first.repo)) result.blobsMounted++;
          else throw new Error(`mount of ${d.digest} into ${repo} refused`);
        })();
        mounted.set(key, m);
      }
      return m;
    }
    if (first) return first.done;
    const done = (async () => {
      const { body } = await src.getBlob(repo, d.digest);
      await dst.upload(repo, d.digest, d.size, body);
      result.blobsUploaded++;
    })();
    uploaded.set(d.digest, { repo, done });
    return done;
  };

  // Tags flow from the listing straight into the C lanes: listing overlaps copying.
  const pending: { repo: string; tag: string }[] = [];
  let listingDone = false;
  let waiting: (() => void)[] = [];
  const wake = (): void => {
    const w = waiting;
    waiting = [];
    for (const f of w) f();
  };
  const listing = (async () => {
    for (const repo of job.repositories) {
      for (const tag of await src.tags(repo)) pending.push({ repo, tag });
      wake();
    }
    listingDone = true;
    wake();
  })();
  const next = async (): Promise<{ repo: string; tag: string } | undefined> => {
    for (;;) {
      const item = pending.shift();
      if (item) return item;
      if (listingDone) return undefined;
      await new Promise<void>((r) => waiting.push(r));
    }
  };
  const lane = async (): Promise<void> => {
    for (let item = await next(); item; item = await next()) {
      const { repo, tag } = item;
      result.tags++;
      if (job.mode === 'noop') {
        const [a, b] = await Promise.all([src.headManifest(repo, tag), dst.headManifest(repo, tag)]);
        if (a && a === b) result.present++;
        else throw new Error(`${repo}:${tag} differs (${a} vs ${b})`);
        continue;
      }
      const m = await src.getManifest(repo, tag);
      if (!m) throw new Error(`${repo}:${tag} vanished`);
      const parsed = JSON.parse(m.bytes.toString('utf8')) as { config: Descriptor; layers: Descriptor[] };
      await Promise.all([parsed.config, ...parsed.layers].map((d) => copyBlob(repo, d)));
      await dst.putManifest(repo, tag, m.bytes, m.mediaType);
      result.copied++;
    }
  };
  await Promise.all([listing, ...Array.from({ length: job.concurrency }, lane)]);
  result.ms = performance.now() - started;
  await Promise.all([src.close(), dst.close()]);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main(process.argv[2] ?? '').catch((err: unknown) => {
  process.stderr.write(`minimal-client: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});

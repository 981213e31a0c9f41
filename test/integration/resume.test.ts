// Copy by chunk, mid-blob resume and the journal, against real registries (distribution 2.8) with
// counting proxies in front of the source and the destination.
import pino from 'pino';
import { request } from 'undici';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FerryConfig } from '../../src/config/schema.js';
import { Engine } from '../../src/engine/engine.js';
import { openState } from '../../src/state/index.js';
import {
  type TestImage,
  type TestProxy,
  type TestRegistry,
  buildImage,
  getBlob,
  getManifest,
  headBlob,
  pushImage,
  randomBlob,
  rawClient,
  sha256,
  startProxy,
  startRegistry,
} from '../helpers/index.js';
import { readCheckpoint, tempDir, transferConfig, uploadRequests, waitFor } from './transfer-fixtures.js';

let source: TestRegistry;
let destination: TestRegistry;
let src: TestProxy;
let dst: TestProxy;
const base = [randomBlob(120_000), randomBlob(90_000)];
let small: TestImage;
let big: TestImage;
const BIG = 1_500_000;

beforeAll(async () => {
  [source, destination] = await Promise.all([startRegistry(), startRegistry()]);
  [src, dst] = await Promise.all([startProxy(source.url), startProxy(destination.url)]);
  small = buildImage({ layers: [200_000, 150_000], format: 'oci' });
  big = buildImage({ layers: [BIG], format: 'docker' });
  await pushImage(source, 'chunk/small', '1', small);
  await pushImage(source, 'chunk/big', '1', big);
  for (const name of ['a', 'b', 'c']) {
    await pushImage(source, `j${name}/app`, name, buildImage({ layers: [...base, randomBlob(30_000)], format: 'oci' }));
  }
}, 60_000);

afterAll(async () => {
  await Promise.all([src?.stop(), dst?.stop()]);
  await Promise.all([source?.stop(), destination?.stop()]);
});

beforeEach(() => {
  src.setFaults({});
  dst.setFaults({});
  src.resetStats();
  dst.resetStats();
});

function config(namespace: string, repositories: string[], transfer: Record<string, unknown> = {}, rule: Record<string, unknown> = {}): FerryConfig {
  return transferConfig({
    source: { url: src.url },
    destination: { url: dst.url },
    transfer: { chunkSize: '64KiB', ...transfer },
    rule: { destinationNamespace: namespace, filters: { repositories }, ...rule },
  });
}

const bigLayer = () => big.layers[0]!;
const dstKey = () => `dst@${dst.host}`;

async function expectSameImage(repo: string, tag: string, image: TestImage): Promise<void> {
  const m = await getManifest(destination, repo, tag);
  expect(m?.digest, `${repo}:${tag}`).toBe(image.digest);
  for (const [digest, bytes] of image.blobs) {
    const got = await getBlob(destination, repo, digest);
    expect(got && sha256(got), `${repo} blob ${digest}`).toBe(sha256(bytes));
  }
}

/** Syncs chunk/big into `namespace` with `transfer`, checks the copy, and returns the digests whose uploads were checkpointed. */
async function syncBigRecordingCheckpoints(namespace: string, transfer: Record<string, unknown>): Promise<string[]> {
  const engine = new Engine(config(namespace, ['chunk/big'], transfer), { stateDir: tempDir(`ferry-${namespace}-`) });
  const checkpointed: string[] = [];
  const { state } = engine;
  const checkpointUpload = state.checkpointUpload.bind(state);
  state.checkpointUpload = async (reg, repo, d, loc, off) => {
    checkpointed.push(d);
    await checkpointUpload(reg, repo, d, loc, off);
  };
  try {
    const report = await engine.sync();
    expect(report.rules[0]!.artifacts.copied).toBe(1);
    await expectSameImage(`${namespace}/chunk/big`, '1', big);
  } finally {
    await engine.close();
  }
  return checkpointed;
}

describe('copy by chunk', () => {
  it('uploads every blob as PATCH chunks of transfer.chunkSize with Content-Range, then an empty PUT ?digest=', async () => {
    const engine = new Engine(config('c1', ['chunk/small']), { stateDir: false });
    try {
      const report = await engine.sync();
      expect(report.rules[0]!.items.map((i) => [i.status, i.reason])).toEqual([['copied', undefined]]);
      await expectSameImage('c1/chunk/small', '1', small);
      const patches = dst.requests.filter((r) => r.method === 'PATCH');
      const expected = [...small.blobs.values()].reduce((n, b) => n + Math.ceil(b.length / 65_536), 0);
      expect(patches.length).toBe(expected);
      for (const p of patches) {
        const [a, b] = String(p.headers['content-range']).split('-').map(Number);
        expect(Number(p.headers['content-length'])).toBe(b! - a! + 1);
        expect(b! - a! + 1).toBeLessThanOrEqual(65_536);
      }
      const puts = uploadRequests(dst.requests).filter((r) => r.method === 'PUT');
      expect(puts.length).toBe(small.blobs.size);
      for (const p of puts) {
        expect(p.path).toMatch(/[?&]digest=sha256%3A|[?&]digest=sha256:/);
        expect(dst.requests.find((r) => r === p)?.headers['content-length']).toBe('0');
      }
    } finally {
      await engine.close();
    }
  });

  it('checkpoints each confirmed chunk of a large blob in the state and clears it when the blob is done', async () => {
    const stateDir = tempDir('ferry-chunk-state-');
    const engine = new Engine(config('c2', ['chunk/big'], { chunkSize: '128KiB', resumeThreshold: '256KiB' }), { stateDir });
    // Every state write, in order (the database keeps only the last checkpoint of a session).
    const lines: { t: string; d: string; off?: number; loc?: string }[] = [];
    const { state } = engine;
    const checkpointUpload = state.checkpointUpload.bind(state);
    const recordBlob = state.recordBlob.bind(state);
    state.checkpointUpload = async (reg, repo, d, loc, off) => {
      await checkpointUpload(reg, repo, d, loc, off);
      lines.push({ t: 'u', d, off, loc });
    };
    state.recordBlob = async (reg, repo, d, size) => {
      await recordBlob(reg, repo, d, size);
      lines.push({ t: 'b', d });
    };
    try {
      const report = await engine.sync();
      expect(report.rules[0]!.artifacts.copied).toBe(1);
      await expectSameImage('c2/chunk/big', '1', big);
    } finally {
      await engine.close();
    }
    const checkpoints = lines.filter((l) => l.t === 'u' && l.d === bigLayer().digest);
    expect(checkpoints.map((c) => c.off)).toEqual(Array.from({ length: Math.ceil(BIG / 131_072) + 1 }, (_, i) => Math.min(i * 131_072, BIG)));
    expect(checkpoints.every((c) => c.loc?.startsWith(dst.url))).toBe(true);
    expect(lines.findLastIndex((l) => l.t === 'b' && l.d === bigLayer().digest)).toBeGreaterThan(lines.findLastIndex((l) => l.t === 'u'));
    const reopened = openState({ stateDir });
    expect(await reopened.upload(dstKey(), 'c2/chunk/big', bigLayer().digest)).toBeUndefined();
    expect(await reopened.knownBlob(dstKey(), 'c2/chunk/big', bigLayer().digest)).toBeDefined();
    await reopened.close();
  });

  it('streams a blob without buffering when OCI-Chunk-Min-Length asks for more than Ferry buffers', async () => {
    // A registry may announce any minimum chunk (up to the whole blob); buffering it would put the
    // whole blob in memory. Such a blob is streamed chunk by chunk instead: no checkpoints.
    dst.setFaults({ responseHeaders: { match: /^POST \/v2\/.+\/blobs\/uploads\/$/, headers: { 'OCI-Chunk-Min-Length': String(2 ** 40) } } });
    const checkpointed = await syncBigRecordingCheckpoints('c9', { chunkSize: '128KiB', resumeThreshold: '256KiB' });
    expect(checkpointed).not.toContain(bigLayer().digest);
    // One streamed PATCH carried the whole big layer (the minimum exceeds the blob).
    const patches = dst.requests.filter((r) => r.method === 'PATCH' && /\/blobs\/uploads\//.test(r.path));
    expect(patches.some((p) => p.headers['content-range'] === `0-${BIG - 1}`)).toBe(true);
  });

  it('with the defaults (no chunkSize), uploads blobs of resumeThreshold and more resumably, smaller ones in one PUT', async () => {
    const checkpointed = await syncBigRecordingCheckpoints('c10', { chunkSize: undefined, resumeThreshold: '256KiB' });
    expect(checkpointed).toContain(bigLayer().digest);
    expect(checkpointed).not.toContain(big.config.digest);
    const uploads = dst.requests.filter((r) => /\/v2\/c10\/.+\/blobs\/uploads\//.test(r.path));
    // The big layer: one PATCH (16 MiB chunks > 1.5 MB) and an empty PUT; the config: one PUT with its bytes.
    expect(uploads.filter((r) => r.method === 'PATCH')).toHaveLength(1);
    expect(uploads.filter((r) => r.method === 'PUT')).toHaveLength(2);
  });

  it('with the defaults, a registry refusing PATCH gets each blob in one PUT for the rest of the run, said once', async () => {
    dst.setFaults({ statusSequence: { match: /^PATCH /, statuses: Array(50).fill(405) } });
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: 'warn' }, { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) });
    const engine = new Engine(config('c11', ['chunk/big', 'chunk/small'], { chunkSize: undefined, resumeThreshold: '100KiB' }), { stateDir: false, logger });
    try {
      const report = await engine.sync();
      expect(report.rules[0]!.artifacts.copied).toBe(2);
      expect(report.rules[0]!.artifacts.failed).toBe(0);
      await expectSameImage('c11/chunk/big', '1', big);
      await expectSameImage('c11/chunk/small', '1', small);
    } finally {
      await engine.close();
    }
    // At most one refused PATCH per blob already in flight (three big blobs, started together), then
    // PUTs only: the refusal is remembered for the registry.
    expect(dst.count(/^PATCH /)).toBeLessThanOrEqual(3);
    expect(lines.filter((l) => /refuses chunked uploads/.test(String(l.msg)))).toHaveLength(1);
  });

  it('names transfer.chunkSize when the registry refuses chunked uploads, and commits nothing', async () => {
    dst.setFaults({ statusSequence: { match: /^PATCH /, statuses: Array(50).fill(405) } });
    const engine = new Engine(config('c3', ['chunk/small']), { stateDir: false });
    try {
      const report = await engine.sync();
      const item = report.rules[0]!.items[0]!;
      expect(item.status).toBe('failed');
      expect(item.reason).toMatch(/refuses chunked uploads.*transfer\.chunkSize: 0/);
      expect(item.reason).toMatch(/HTTP 405/);
      // Not retried: one PATCH per blob, each refused.
      expect(dst.count(/^PATCH /)).toBeLessThanOrEqual(small.blobs.size);
      for (const digest of small.blobs.keys()) expect(await headBlob(destination, 'c3/chunk/small', digest)).toBe(false);
      expect(await getManifest(destination, 'c3/chunk/small', '1')).toBeNull();
    } finally {
      await engine.close();
    }
  });

  it('never commits a blob from a lying source, streamed or buffered', async () => {
    src.setFaults({ flipByteInBlobs: true });
    const engine = new Engine(config('c4', ['chunk/small', 'chunk/big'], { resumeThreshold: '256KiB', retries: 0 }), { stateDir: false });
    try {
      const report = await engine.sync();
      const items = report.rules[0]!.items;
      expect(items).toHaveLength(2);
      for (const i of items) {
        expect(i.status).toBe('failed');
        expect(i.reason).toMatch(/digest mismatch/);
      }
      for (const [repo, image] of [['c4/chunk/small', small], ['c4/chunk/big', big]] as const) {
        for (const digest of image.blobs.keys()) expect(await headBlob(destination, repo, digest), `${repo} ${digest}`).toBe(false);
      }
    } finally {
      await engine.close();
    }
  });
});

describe('mid-blob resume', () => {
  const resumable = { chunkSize: '128KiB', resumeThreshold: '256KiB' };

  it('after a source reset in this process, continues from the confirmed offset with a Range request', async () => {
    const layer = bigLayer();
    src.setFaults({ resetAfterBytes: 700_000, resetTimes: 1, resetMatch: new RegExp(`^GET .*/blobs/${layer.digest}`) });
    const engine = new Engine(config('r1', ['chunk/big'], resumable), { stateDir: false });
    try {
      const report = await engine.sync();
      expect(report.rules[0]!.artifacts.copied).toBe(1);
      await expectSameImage('r1/chunk/big', '1', big);
    } finally {
      await engine.close();
    }
    expect(src.resets).toBe(1);
    const gets = src.requests.filter((r) => r.method === 'GET' && r.path.includes(layer.digest));
    expect(gets).toHaveLength(2);
    const range = String(gets[1]!.headers.range);
    const offset = Number(/^bytes=(\d+)-$/.exec(range)?.[1]);
    // Resumed at a chunk boundary, without re-reading the prefix (the hash state was kept in memory).
    expect(offset).toBeGreaterThan(0);
    expect(offset % 131_072).toBe(0);
    // The destination received each byte of the layer once.
    const total = [...big.blobs.values()].reduce((n, b) => n + b.length, 0) + big.manifest.length;
    expect(dst.bytesUp).toBe(total);
  });

  /** Runs a capped sync until the layer's checkpoint passes `atLeast` bytes, then aborts it. Returns the offset. */
  async function interruptedRun(namespace: string, stateDir: string, atLeast: number): Promise<number> {
    const layer = bigLayer();
    const engine = new Engine(config(namespace, ['chunk/big'], { ...resumable, bandwidth: '1MB/s' }), { stateDir });
    const controller = new AbortController();
    try {
      const run = engine.sync({ signal: controller.signal });
      await waitFor(() => (readCheckpoint(stateDir, `${namespace}/chunk/big`, layer.digest)?.offset ?? 0) >= atLeast, 10_000, 'a checkpoint');
      controller.abort(new Error('test interruption'));
      const report = await run;
      expect(report.status).toBe('cancelled');
      expect(report.rules[0]!.items[0]?.reason).toMatch(/interrupted/);
    } finally {
      await engine.close();
    }
    const checkpoint = await readState(stateDir, (s) => s.upload(dstKey(), `${namespace}/chunk/big`, layer.digest));
    expect(checkpoint).toBeDefined();
    expect(await headBlob(destination, `${namespace}/chunk/big`, layer.digest)).toBe(false);
    return checkpoint!.offset;
  }

  it('in a new process, asks the session for its Range, rebuilds the digest state from the source prefix and sends only the rest', async () => {
    const layer = bigLayer();
    const stateDir = tempDir('ferry-resume-state-');
    const offset = await interruptedRun('r2', stateDir, 400_000);
    src.resetStats();
    dst.resetStats();

    const engine = new Engine(config('r2', ['chunk/big'], resumable), { stateDir });
    try {
      const report = await engine.sync();
      expect(report.rules[0]!.artifacts.copied).toBe(1);
      await expectSameImage('r2/chunk/big', '1', big);
    } finally {
      await engine.close();
    }
    // Status of the journaled session, then the prefix (hash only) and the rest, both as Range reads.
    expect(dst.requests.some((r) => r.method === 'GET' && r.path.includes('/blobs/uploads/'))).toBe(true);
    const ranges = src.requests.filter((r) => r.method === 'GET' && r.path.includes(layer.digest)).map((r) => r.headers.range);
    expect(ranges).toEqual([`bytes=0-${offset - 1}`, `bytes=${offset}-`]);
    // Only the rest of the layer (plus whatever of the small config and the manifest was still due),
    // continuing the same session: its first PATCH starts at the offset.
    const patches = dst.requests.filter((r) => r.method === 'PATCH').map((r) => String(r.headers['content-range']));
    expect(patches.some((p) => p.startsWith(`${offset}-`))).toBe(true);
    expect(patches.filter((p) => Number(p.split('-')[0]) < offset).every((p) => Number(p.split('-')[1]) < big.config.bytes.length)).toBe(true);
    expect(dst.bytesUp).toBeLessThanOrEqual(BIG - offset + big.config.bytes.length + big.manifest.length);
    expect(dst.bytesUp).toBeGreaterThanOrEqual(BIG - offset);
  });

  it('starts the blob over when the upload session expired in the meantime', async () => {
    const stateDir = tempDir('ferry-resume-state-');
    await interruptedRun('r3', stateDir, 300_000);
    const checkpoint = (await readState(stateDir, (s) => s.upload(dstKey(), 'r3/chunk/big', bigLayer().digest)))!;
    // The registry forgets the session (as purging would).
    const del = await request(checkpoint.location, { method: 'DELETE' });
    await del.body.dump();
    expect(del.statusCode).toBe(204);
    dst.resetStats();

    const engine = new Engine(config('r3', ['chunk/big'], resumable), { stateDir });
    try {
      const report = await engine.sync();
      expect(report.rules[0]!.artifacts.copied).toBe(1);
      await expectSameImage('r3/chunk/big', '1', big);
    } finally {
      await engine.close();
    }
    expect(dst.bytesUp).toBeGreaterThanOrEqual(BIG);
  });
});

describe('the journal', () => {
  const stateDir = tempDir('ferry-journal-state-');
  // ja/app, jb/app and jc/app all land in j/app (flatten: all) and share two base layers.
  const rule = { flatten: 'all' };

  it('lets a rerun skip journaled blobs without any request', async () => {
    const first = new Engine(config('j', ['ja/app'], { chunkSize: 0 }, rule), { stateDir });
    try {
      expect((await first.sync()).rules[0]!.artifacts.copied).toBe(1);
    } finally {
      await first.close();
    }
    dst.resetStats();
    const second = new Engine(config('j', ['jb/app'], { chunkSize: 0 }, rule), { stateDir });
    try {
      const report = await second.sync();
      expect(report.rules[0]!.artifacts.copied).toBe(1);
      expect(report.rules[0]!.blobs.skipped).toBeGreaterThanOrEqual(2);
    } finally {
      await second.close();
    }
    for (const b of base) expect(dst.count(new RegExp(sha256(b).replace(':', '[:%3A]+')))).toBe(0);
    expect(await headBlob(destination, 'j/app', sha256(base[0]!))).toBe(true);
  });

  it('confirms entries older than transfer.journalMaxAge with a HEAD, and copies again a blob gone from the destination', async () => {
    const gone = sha256(base[0]!);
    const del = await rawClient(destination).request('DELETE', `/v2/j/app/blobs/${gone}`, { scope: 'repository:j/app:delete' });
    expect(del.status).toBe(202);
    expect(await headBlob(destination, 'j/app', gone)).toBe(false);
    await new Promise((r) => setTimeout(r, 1100));
    dst.resetStats();
    const third = new Engine(config('j', ['jc/app'], { chunkSize: 0, journalMaxAge: 1 }, rule), { stateDir });
    try {
      const report = await third.sync();
      expect(report.rules[0]!.artifacts.copied).toBe(1);
    } finally {
      await third.close();
    }
    for (const b of base) expect(dst.count(new RegExp(`^HEAD .*/blobs/${sha256(b)}`))).toBe(1);
    expect(dst.count(new RegExp(`^PUT .*/blobs/uploads/.*digest=${gone.replace(':', '(:|%3A)')}`))).toBe(1);
    expect(await headBlob(destination, 'j/app', gone)).toBe(true);
  });
});

describe('bandwidth through the engine', () => {
  it('applies a rule cap changed at run time to the transfer in flight', async () => {
    const engine = new Engine(config('bw', ['chunk/big'], { chunkSize: 0 }), { stateDir: false });
    try {
      engine.setRuleBandwidth('r', 256 * 1024);
      const t0 = Date.now();
      const run = engine.sync();
      await new Promise((r) => setTimeout(r, 300));
      expect(dst.bytesUp).toBeLessThan(300_000); // held to the rule's cap so far
      engine.setRuleBandwidth('r', 0);
      const report = await run;
      expect(report.rules[0]!.artifacts.copied).toBe(1);
      // At the first cap alone the 1.5 MB layer would need about 6 s.
      expect(Date.now() - t0).toBeLessThan(3000);
    } finally {
      await engine.close();
    }
    await expectSameImage('bw/chunk/big', '1', big);
  });
});

/** Opens the state of `stateDir`, reads with `fn`, closes it (and its lock). */
async function readState<T>(stateDir: string, fn: (s: ReturnType<typeof openState>) => Promise<T>): Promise<T> {
  const s = openState({ stateDir });
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

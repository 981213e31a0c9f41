// The progress display as units: counters fed by engine events, the non-TTY log line, the TTY
// rendering, the ETA rules, and the TTY redraw/log interleaving.
import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ProgressDisplay, progressMode } from '../../src/cli/progress.js';
import {
  type ProgressSnapshot,
  ProgressTracker,
  estimateEta,
  formatDuration,
  formatProgressLine,
  progressFields,
  renderProgress,
} from '../../src/engine/progress.js';
import type { ArtifactResult, TransferEvents } from '../../src/transfer/stats.js';

const MiB = 1024 * 1024;

function artifact(status: ArtifactResult['status']): ArtifactResult {
  return { source: 'src/a:1', destination: 'dst/a:1', status, tags: ['1'] };
}

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

function snapshot(over: Partial<ProgressSnapshot> = {}): ProgressSnapshot {
  return {
    elapsedMs: 95_000,
    bytes: 1.5 * 1024 * MiB,
    bytesDone: 1.5 * 1024 * MiB,
    bytesPerSecond: 45 * MiB,
    artifacts: { done: 52, failed: 1, total: 140 },
    blobs: { uploaded: 120, mounted: 30, skipped: 150, done: 300, active: 2 },
    rules: [
      { name: 'idc-to-tcr', planned: 100, done: 40, copied: 30, present: 9, skipped: 0, failed: 1, bytes: 1024 * MiB, artifactsSized: 0, bytesSkipped: 0 },
      { name: 'charts', planned: 40, done: 12, copied: 12, present: 0, skipped: 0, failed: 0, bytes: 512 * MiB, artifactsSized: 0, bytesSkipped: 0 },
      { name: 'nightly', done: 0, copied: 0, present: 0, skipped: 0, failed: 0, bytes: 0, artifactsSized: 0, bytesSkipped: 0 },
    ],
    active: [
      { digest: `sha256:${'ab'.repeat(32)}`, size: 300 * MiB, rule: 'idc-to-tcr', bytesDone: 75 * MiB, ageMs: 12_000 },
      { digest: `sha256:${'cd'.repeat(32)}`, size: 2 * MiB, rule: 'charts', bytesDone: 0, ageMs: 1_000 },
    ],
    etaSeconds: 190,
    retries: 0,
    ...over,
  };
}

describe('ProgressTracker', () => {
  it('counts artifacts per rule, blobs, bytes and active blobs from engine events', () => {
    const c = clock();
    const events = new EventEmitter<TransferEvents>();
    const t = new ProgressTracker({ rules: ['a', 'b'], now: c.now }).attach(events);
    expect(t.snapshot().rules.map((r) => r.planned)).toEqual([undefined, undefined]);
    expect(t.snapshot().artifacts.total).toBeUndefined();

    events.emit('planned', 'a', 3);
    expect(t.snapshot().artifacts.total).toBeUndefined(); // b is still listing
    events.emit('planned', 'b', 1);
    events.emit('blobStart', 'sha256:1', 10 * MiB, 'a');
    events.emit('blobStart', 'sha256:2', 20 * MiB, 'a');
    c.advance(2000);
    events.emit('bytes', 4 * MiB, 'a', 'sha256:2');
    events.emit('blobEnd', 'sha256:1', 'a');
    events.emit('blob', 'uploaded', 'a', 10 * MiB);
    events.emit('blob', 'mounted', 'b', 5);
    events.emit('artifact', artifact('copied'), 'a');
    events.emit('artifact', artifact('failed'), 'a');
    events.emit('retry', 'dst');

    const s = t.snapshot();
    expect(s.artifacts).toEqual({ done: 2, failed: 1, total: 4 });
    expect(s.blobs).toEqual({ uploaded: 1, mounted: 1, skipped: 0, done: 2, active: 1 });
    expect(s.active).toEqual([{ digest: 'sha256:2', size: 20 * MiB, rule: 'a', bytesDone: 4 * MiB, ageMs: 2000 }]);
    expect(s.bytes).toBe(4 * MiB);
    expect(s.bytesPerSecond).toBe(2 * MiB);
    expect(s.rules.find((r) => r.name === 'a')).toMatchObject({ planned: 3, done: 2, copied: 1, failed: 1, bytes: 4 * MiB });
    expect(s.retries).toBe(1);
    // ETA from bytes: the done artifacts sent nothing (all 4 MiB belong to the blob in flight), which
    // still lacks 16 MiB, at 2 MiB/s → 8 s.
    expect(s.etaSeconds).toBeCloseTo(8);

    t.detach();
    events.emit('artifact', artifact('copied'), 'a');
    expect(t.snapshot().artifacts.done).toBe(2);
  });

  it('averages the rate over a sliding window', () => {
    const c = clock();
    const events = new EventEmitter<TransferEvents>();
    const t = new ProgressTracker({ rateWindowMs: 10_000, now: c.now }).attach(events);
    for (let i = 0; i < 20; i++) {
      c.advance(1000);
      events.emit('bytes', i < 10 ? 10 * MiB : MiB, 'r');
      t.snapshot();
    }
    // the last ~10 s ran at 1 MiB/s; the 10 MiB/s start is out of the window
    expect(t.snapshot().bytesPerSecond).toBeGreaterThan(0.9 * MiB);
    expect(t.snapshot().bytesPerSecond).toBeLessThan(2 * MiB);
  });

  it('counts bytes planned and done (sent + needing no sending); the ETA is from the bytes left', () => {
    const c = clock();
    const events = new EventEmitter<TransferEvents>();
    const t = new ProgressTracker({ rules: ['a', 'b'], now: c.now }).attach(events);
    events.emit('planned', 'a', 4);
    events.emit('planned', 'b', 2);
    // a: its listing sized 2 of its 4 artifacts (100 MiB); b: both artifacts' manifests read (20 MiB).
    events.emit('plannedBytes', 'a', 100 * MiB, 2);
    events.emit('plannedBytes', 'b', 20 * MiB, 2);
    let s = t.snapshot();
    expect(s.bytesPlanned).toEqual({ bytes: 120 * MiB, artifacts: 4 });
    expect(s.bytesTotal).toBeUndefined(); // a has 2 artifacts not counted yet
    c.advance(1000);
    events.emit('bytes', 10 * MiB, 'a');
    events.emit('bytesSkipped', 20 * MiB, 'b');
    s = t.snapshot();
    expect(s.bytes).toBe(10 * MiB);
    expect(s.bytesDone).toBe(30 * MiB);
    // 120 MiB over 4 artifacts, 6 planned: 180 MiB expected, 150 MiB left at 10 MiB/s.
    expect(s.etaSeconds).toBeCloseTo(15);
    expect(formatProgressLine(s)).toContain('30.0 MiB / 120.0 MiB+ done at 10.0 MiB/s, ETA 15s');
    expect(renderProgress(s, { width: 200 })[1]).toBe('  a  0/4 artifacts  10.0 MiB / 100.0 MiB+');
    // Every artifact counted: the total is known and the "+" goes.
    events.emit('plannedBytes', 'a', 160 * MiB, 4);
    s = t.snapshot();
    expect(s.bytesTotal).toBe(180 * MiB);
    expect(s.etaSeconds).toBeCloseTo(15);
    expect(renderProgress(s, { width: 200 })[0]).toMatch(/^ferry  30\.0 MiB \/ 180\.0 MiB  /);
    expect(progressFields(s)).toMatchObject({ bytes: 10 * MiB, bytesDone: 30 * MiB, bytesPlanned: 180 * MiB, bytesTotal: 180 * MiB });
  });

  it('counts a blob copied twice at once (two repositories, retries) until both end', () => {
    const events = new EventEmitter<TransferEvents>();
    const t = new ProgressTracker().attach(events);
    events.emit('blobStart', 'sha256:x', 1, 'r');
    events.emit('blobStart', 'sha256:x', 1, 'r');
    events.emit('blobEnd', 'sha256:x', 'r');
    expect(t.snapshot().blobs.active).toBe(1);
    events.emit('blobEnd', 'sha256:x', 'r');
    expect(t.snapshot().blobs.active).toBe(0);
  });
});

describe('estimateEta', () => {
  const base = { bytes: 100, bytesPerSecond: 10, artifacts: { done: 1, failed: 0, total: 4 } };
  it('uses bytes when the total is known', () => {
    expect(estimateEta({ ...base, bytesTotal: 200 }, 5000)).toBe(10);
  });
  it('without a total: bytes per artifact done times the artifacts left, plus what blobs in flight lack, at the current rate', () => {
    expect(estimateEta(base, 5000)).toBe(30); // 100 B per artifact x 3 left / 10 B/s
    // One artifact in flight: its blob lacks 50 B, 2 more artifacts after it at 100 B each.
    expect(estimateEta({ ...base, bytes: 130, active: [{ size: 80, bytesDone: 30 }] }, 5000)).toBe(25);
    // The rate halves: the ETA doubles at once (the share of artifacts would not notice).
    expect(estimateEta({ ...base, bytesPerSecond: 5 }, 5000)).toBe(60);
  });
  it('extrapolates the bytes planned so far over the artifacts not counted yet', () => {
    // 200 B planned over 2 artifacts of 4: 400 B expected, 300 B left at 10 B/s.
    expect(estimateEta({ ...base, bytesPlanned: { bytes: 200, artifacts: 2 } }, 5000)).toBe(30);
    expect(estimateEta({ ...base, bytesPlanned: { bytes: 400, artifacts: 4 } }, 5000)).toBe(30);
    // the known total wins
    expect(estimateEta({ ...base, bytesTotal: 150, bytesPlanned: { bytes: 200, artifacts: 2 } }, 5000)).toBe(5);
  });
  it('falls back to the share of artifacts done since planning when no bytes move', () => {
    expect(estimateEta({ ...base, bytesPerSecond: 0 }, 5000)).toBe(15);
  });
  it('is 0 when everything is done and unknown before anything is', () => {
    expect(estimateEta({ ...base, artifacts: { done: 4, failed: 0, total: 4 } })).toBe(0);
    expect(estimateEta({ ...base, artifacts: { done: 0, failed: 0, total: 4 } }, 5000)).toBeUndefined();
    expect(estimateEta({ ...base, artifacts: { done: 3, failed: 0 } }, 5000)).toBeUndefined();
  });
});

describe('formatting', () => {
  it('formats durations', () => {
    expect([formatDuration(undefined), formatDuration(0), formatDuration(59.4), formatDuration(190), formatDuration(7322)]).toEqual(['--', '0s', '59s', '3m10s', '2h02m']);
  });

  it('writes the non-TTY log line', () => {
    expect(formatProgressLine(snapshot())).toBe(
      'progress: 52/140 artifacts (1 failed), 1.5 GiB sent at 45.0 MiB/s, ETA 3m10s, blobs 300 done (120 uploaded, 30 mounted, 150 skipped), 2 active, 1m35s elapsed',
    );
    expect(formatProgressLine(snapshot({ artifacts: { done: 0, failed: 0 }, etaSeconds: undefined, bytes: 0, bytesPerSecond: 0, retries: 3 }))).toBe(
      'progress: 0/? artifacts, 0 B sent at 0 B/s, ETA --, blobs 300 done (120 uploaded, 30 mounted, 150 skipped), 2 active, 3 retries, 1m35s elapsed',
    );
    expect(formatProgressLine(snapshot({ bytesTotal: 3 * 1024 * MiB }))).toContain('1.5 GiB / 3.0 GiB done');
    expect(progressFields(snapshot())).toMatchObject({ artifactsDone: 52, artifactsTotal: 140, bytesPerSecond: 45 * MiB, etaSeconds: 190, rules: { nightly: { planned: null } } });
  });

  it('renders the TTY display: overall line, one line per rule, active blobs', () => {
    expect(renderProgress(snapshot(), { width: 200 })).toEqual([
      'ferry  1.5 GiB  45.0 MiB/s  ETA 3m10s  ·  52/140 artifacts (1 failed)  ·  blobs 300 done, 2 active  ·  1m35s',
      '  idc-to-tcr  40/100 artifacts, 1 failed, 9 present  1.0 GiB',
      '  charts      12/40 artifacts  512.0 MiB',
      '  nightly     listing…',
      `    ↑ sha256:abababababab   75.0 MiB / 300.0 MiB  25%  idc-to-tcr  12s`,
      `    ↑ sha256:cdcdcdcdcdcd          0 B / 2.0 MiB   0%  charts  1s`,
    ]);
  });

  it('cuts lines to the terminal width and counts the active blobs it does not list', () => {
    const many = Array.from({ length: 7 }, (_, i) => ({ digest: `sha256:${String(i).repeat(64)}`, size: MiB, rule: 'r', bytesDone: 0, ageMs: 0 }));
    const lines = renderProgress(snapshot({ active: many }), { width: 40, maxActive: 3 });
    for (const l of lines) expect([...l].length).toBeLessThanOrEqual(40);
    expect(lines[0]).toMatch(/…$/);
    expect(lines.filter((l) => l.includes('↑'))).toHaveLength(3);
    expect(lines.at(-1)).toBe('    … 4 more blob(s) in flight');
  });

  it('marks a finished rule', () => {
    const s = snapshot({ rules: [{ name: 'r', planned: 2, done: 2, copied: 2, present: 0, skipped: 0, failed: 0, bytes: 10, artifactsSized: 0, bytesSkipped: 0 }] });
    expect(renderProgress(s)[1]).toBe('  r  2/2 artifacts  10 B  done');
  });
});

describe('ProgressDisplay', () => {
  it('picks tty, log or none', () => {
    expect(progressMode({ isTTY: true })).toBe('tty');
    expect(progressMode({ isTTY: false })).toBe('log');
    expect(progressMode({ isTTY: undefined })).toBe('log');
    expect(progressMode({ quiet: true, isTTY: true })).toBe('none');
  });

  function fakeTty() {
    const out = new PassThrough();
    let text = '';
    out.on('data', (d: Buffer) => (text += d.toString()));
    Object.assign(out, { columns: 80, isTTY: true });
    return { stream: out as unknown as NodeJS.WriteStream, text: () => text };
  }

  it('draws on a TTY, writes logs above the display, and erases it on stop', async () => {
    const tty = fakeTty();
    const events = new EventEmitter<TransferEvents>();
    const d = new ProgressDisplay({ mode: 'tty', stream: tty.stream, ttyIntervalMs: 60_000 }).start(events, { rules: ['r'] });
    await new Promise((r) => setImmediate(r));
    expect(tty.text()).toMatch(/^ferry  0 B  0 B\/s  ETA --  ·  0\/\? artifacts  ·  blobs 0 done, 0 active  ·  0s\n  r  listing…\n$/);
    const log = d.logStream();
    log.write('{"msg":"hello"}\n');
    await new Promise((r) => setImmediate(r));
    // cursor up over the 2 drawn lines, clear, the log line, then the display again
    expect(tty.text()).toContain('\u001b[2A\r\u001b[J{"msg":"hello"}\nferry ');
    d.stop();
    expect(tty.text().endsWith('\u001b[2A\r\u001b[J')).toBe(true);
  });

  it('writes nothing in none mode; logs a line per period in log mode', async () => {
    const tty = fakeTty();
    const events = new EventEmitter<TransferEvents>();
    new ProgressDisplay({ mode: 'none', stream: tty.stream }).start(events).stop();
    expect(tty.text()).toBe('');
    expect(events.listenerCount('artifact')).toBe(0);

    const lines: { msg: string; progress: unknown }[] = [];
    const logger = { info: (fields: { progress: unknown }, msg: string) => lines.push({ ...fields, msg }) } as never;
    const d = new ProgressDisplay({ mode: 'log', stream: tty.stream, logIntervalMs: 20 }).start(events, { rules: ['r'], logger });
    events.emit('planned', 'r', 1);
    await new Promise((r) => setTimeout(r, 70));
    events.emit('artifact', artifact('copied'), 'r');
    d.stop();
    expect(tty.text()).toBe('');
    expect(lines.length).toBeGreaterThanOrEqual(2);
    expect(lines[0]!.msg).toMatch(/^progress: 0\/1 artifacts, /);
    expect(lines.at(-1)!.msg).toMatch(/^progress: 1\/1 artifacts, .*ETA 0s/);
    expect(events.listenerCount('artifact')).toBe(0);
  });
});

// What the request layer leaves on a run's long-lived signal: the cleared deadline of requests and
// blob attempts (src/http/deadline.ts) and the request slots of `limits.maxConcurrency`
// (src/http/limits.ts). What they let go of is what keeps a long run's heap flat (issue 11 item 1).
import { getEventListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { deadline } from '../../src/http/deadline.js';
import { limitsLayer } from '../../src/http/limits.js';
import type { HttpRequest, HttpResponse } from '../../src/http/types.js';

describe('deadline', () => {
  it('aborts signal and expiry when the time passes', async () => {
    const d = deadline(20, undefined);
    expect(d.signal.aborted).toBe(false);
    await sleep(60);
    expect(d.expired).toBe(true);
    expect(d.signal.aborted).toBe(true);
    expect(d.expiry.aborted).toBe(true);
    expect((d.signal.reason as Error).message).toMatch(/deadline of 20 ms passed/);
  });

  it("follows the caller's signal, which does not count as expiry", () => {
    const parent = new AbortController();
    const d = deadline(60_000, parent.signal);
    parent.abort(new Error('stop'));
    expect(d.signal.aborted).toBe(true);
    expect((d.signal.reason as Error).message).toBe('stop');
    expect(d.expiry.aborted).toBe(false);
    expect(d.expired).toBe(false);
    d.clear();
  });

  it('an already aborted parent aborts at once', () => {
    const parent = new AbortController();
    parent.abort(new Error('gone'));
    expect(deadline(60_000, parent.signal).signal.aborted).toBe(true);
  });

  it("clear() stops the timer and leaves nothing on a long-lived parent, however many deadlines it had", async () => {
    const parent = new AbortController();
    const all = Array.from({ length: 1000 }, () => deadline(30, parent.signal));
    expect(getEventListeners(parent.signal, 'abort')).toHaveLength(1000);
    for (const d of all) d.clear();
    expect(getEventListeners(parent.signal, 'abort')).toHaveLength(0);
    await sleep(60);
    expect(all.some((d) => d.expired || d.signal.aborted)).toBe(false);
  });
});

describe('request slots (limits.maxConcurrency)', () => {
  const req = (signal: AbortSignal): HttpRequest => ({ method: 'GET', url: new URL('http://registry.test/v2/'), signal });

  it("leave no listener on the caller's signal once the requests are done", async () => {
    const run = new AbortController();
    const send = limitsLayer({ maxConcurrency: 2 })(async () => ({ statusCode: 200 }) as unknown as HttpResponse);
    await Promise.all(Array.from({ length: 200 }, () => send(req(run.signal))));
    expect(getEventListeners(run.signal, 'abort')).toHaveLength(0);
  });

  it('a request aborted while it waits for a slot fails without being sent', async () => {
    const run = new AbortController();
    let release!: () => void;
    const sent: number[] = [];
    let n = 0;
    const send = limitsLayer({ maxConcurrency: 1 })(async () => {
      sent.push(n++);
      if (sent.length === 1) await new Promise<void>((resolve) => (release = resolve));
      return { statusCode: 200 } as unknown as HttpResponse;
    });
    const first = send(req(new AbortController().signal));
    const waiting = send(req(run.signal));
    run.abort(new Error('stopped'));
    release();
    await first;
    await expect(waiting).rejects.toThrow('stopped');
    expect(sent).toEqual([0]);
  });
});

// The status page in headless Chromium (Debian's chromium driven by playwright-core): rules, triggers,
// last executions, escaped error text, and the live in-flight view refreshing without a reload.
// Skips, saying why, only when no Chromium is installed (scripts/ensure-chromium.mjs installs it).
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, type Page, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { escapeHtml } from '../../src/daemon/status-page.js';
import { Daemon } from '../../src/daemon/service.js';
import { daemonConfig, eventually, fakeEngines } from './fakes.js';

const CHROMIUM = process.env.FERRY_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`status page browser test skipped: ${CHROMIUM} not found (run \`node scripts/ensure-chromium.mjs\` as root, or set FERRY_CHROMIUM)`);

const TOKEN = 'status-page-token-0123456789';
/** Screenshots of each state, for people to look at (FERRY_TEST_OUTPUT overrides the directory). */
const OUTPUT = process.env.FERRY_TEST_OUTPUT ?? join(import.meta.dirname, '..', '..', 'test-output', 'status-page');

async function shot(page: Page, name: string): Promise<void> {
  mkdirSync(OUTPUT, { recursive: true });
  await page.screenshot({ path: join(OUTPUT, `${name}.png`), fullPage: true });
}

/** Console errors and page errors: a clean page has none. */
function watch(page: Page): string[] {
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(e.message));
  return problems;
}
const EVIL = '<img src=x onerror="window.__xss=1">&amp;';

describe('escaping', () => {
  it('escapes every HTML metacharacter', () => {
    expect(escapeHtml(`<a href="x" title='y'>&</a>`)).toBe('&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;');
  });
});

describe.runIf(haveChromium)('status page in headless Chromium', () => {
  let browser: Browser;
  let daemon: Daemon;
  const fakes = fakeEngines();

  beforeAll(async () => {
    daemon = new Daemon({
      config: daemonConfig(
        [
          { name: 'nightly', trigger: { schedule: '30 2 * * *', timezone: 'Europe/Berlin' } },
          { name: 'on-push', trigger: 'event', deleteRemote: true },
          { name: 'broken' },
        ],
        { token: TOKEN },
      ),
      createEngine: fakes.factory,
    });
    await daemon.start();
    // One finished run with a hostile error message, one running.
    daemon.trigger('broken', { type: 'manual', at: new Date().toISOString() }, { full: true, artifacts: [], deletions: [] });
    (await fakes.current().nextRun(0)).fail(EVIL);
    await eventually(() => daemon.runner.running === 0);
    daemon.trigger('on-push', { type: 'event', at: new Date().toISOString(), event: 'PUSH_ARTIFACT' }, { full: false, artifacts: [{ repository: 'lib/a', tags: ['1'] }], deletions: [] });
    await fakes.current().nextRun(1);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    fakes.current().runs[1]?.finish();
    await daemon?.stop(0);
  });

  it('asks for credentials, then shows rules, triggers, executions and the live view with progress, rate and chart', async () => {
    const anonymous = await browser.newContext();
    const denied = await anonymous.request.get(daemon.url);
    expect(denied.status()).toBe(401);
    expect(denied.headersArray().filter((h) => h.name.toLowerCase() === 'www-authenticate').map((h) => h.value)).toContain('Basic realm="ferry", charset="UTF-8"');
    await anonymous.close();

    const context = await browser.newContext({ httpCredentials: { username: 'ops', password: TOKEN }, viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    const problems = watch(page);
    const res = await page.goto(daemon.url);
    expect(res?.status()).toBe(200);
    expect(res?.headers()['content-security-policy']).toMatch(/script-src 'nonce-/);
    expect(await page.title()).toBe('Ferry');
    // The page never holds the token, and says which time zone its times are in.
    expect(await page.content()).not.toContain(TOKEN);
    expect(await page.locator('body').innerText()).toContain('all times UTC');

    const rules = page.locator('#rules tbody tr');
    await expect.poll(() => rules.count()).toBe(3);
    const nightly = page.locator('tr[data-rule="nightly"]');
    expect(await nightly.innerText()).toContain('schedule 30 2 * * * (Europe/Berlin)');
    expect(await nightly.innerText()).toMatch(/\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ/); // next run, UTC
    expect(await page.locator('tr[data-rule="on-push"]').innerText()).toContain('event, deleteRemote');
    expect(await page.locator('tr[data-rule="on-push"] td.state').innerText()).toBe('running');
    expect(await page.locator('tr[data-rule="broken"]').innerText()).toContain('failed');

    // The error text is shown as text, never interpreted (also after the live refresh rewrote the table).
    await expect.poll(() => page.locator('#updated').getAttribute('data-ok')).toBe('true');
    const row = page.locator('#executions tr[data-execution="1"]');
    expect(await row.locator('.errors').innerText()).toBe(EVIL);
    expect(await page.locator('#executions img').count()).toBe(0);
    expect(await page.evaluate('typeof window.__xss')).toBe('undefined');

    // The live view: artifacts and bytes done of planned, the rate and its chart, refreshed without a reload.
    const live = page.locator('#live-rows tr[data-live="2"]');
    await expect.poll(() => live.count(), { timeout: 5000 }).toBe(1);
    expect(await live.innerText()).toContain('on-push');
    const engine = fakes.current() as unknown as { events: import('node:events').EventEmitter };
    engine.events.emit('planned', 'on-push', 4);
    // Planned bytes as the engine learns them: three artifacts' manifests read ("+": more to count) ...
    engine.events.emit('plannedBytes', 'on-push', 6 * 1024 * 1024, 3);
    await expect.poll(() => live.locator('td.bytes').innerText(), { timeout: 5000 }).toBe('0 B / 6.0 MiB+');
    expect(await live.locator('td.eta').innerText()).toBe('--'); // nothing moving yet
    // ... then all four; bytes done = sent (2 MiB) + a blob already at the destination (2 MiB).
    engine.events.emit('plannedBytes', 'on-push', 8 * 1024 * 1024, 4);
    engine.events.emit('blobStart', `sha256:${'b'.repeat(64)}`, 3 * 1024 * 1024, 'on-push');
    engine.events.emit('bytes', 2 * 1024 * 1024, 'on-push');
    engine.events.emit('bytesSkipped', 2 * 1024 * 1024, 'on-push');
    engine.events.emit('artifact', { source: 'src/lib/a:1', destination: 'dst/lib/a:1', status: 'copied', tags: ['1'] }, 'on-push');
    await expect.poll(() => live.locator('td.bytes').innerText(), { timeout: 5000 }).toBe('4.0 MiB / 8.0 MiB');
    expect(await live.locator('td.artifacts').innerText()).toBe('1 / 4');
    expect(await live.locator('progress.p-artifacts').evaluate((p: { value: number; max: number }) => [p.value, p.max])).toEqual([1, 4]);
    expect(await live.locator('progress.p-bytes').evaluate((p: { value: number; max: number }) => [p.value, p.max])).toEqual([4 * 1024 * 1024, 8 * 1024 * 1024]);
    // The ETA is from bytes: 4 MiB left at the current rate (2 MiB over the rate window), in seconds.
    await expect.poll(() => live.locator('td.eta').innerText(), { timeout: 5000 }).toMatch(/^\d+(\.\d)? s$/);
    await expect.poll(async () => Number((await live.locator('.rate-value').innerText()).split(' ')[0]), { timeout: 5000 }).toBeGreaterThan(0);
    const points = await live.locator('svg.chart polyline').getAttribute('points');
    expect(points?.split(' ')).toHaveLength(60);
    expect(points).toMatch(/,0\.50/); // the second with the 2 MiB is the peak: top of the chart
    expect(await live.locator('td').nth(8).innerText()).toBe('1'); // blobs in flight
    await shot(page, '1-overview-running');

    // A trigger while the rule runs: the follow-up is shown as queued, with its work.
    daemon.trigger('on-push', { type: 'event', at: new Date().toISOString(), event: 'PUSH_ARTIFACT' }, { full: false, artifacts: [{ repository: 'lib/b', tags: ['2'] }], deletions: [] });
    const queued = page.locator('#queued-rows tr');
    await expect.poll(() => queued.count(), { timeout: 5000 }).toBe(1);
    expect(await queued.innerText()).toMatch(/on-push[\s\S]*event[\s\S]*1 artifact\(s\), 0 deletion\(s\)/);
    expect(await live.locator('td').nth(9).innerText()).toBe('follow-up queued');
    await shot(page, '2-follow-up-queued');

    // Dropping the follow-up from the page.
    await queued.locator('button', { hasText: 'Drop' }).click();
    await expect.poll(() => page.locator('#message').innerText(), { timeout: 5000 }).toMatch(/#3: cancelled/);
    await expect.poll(() => queued.count(), { timeout: 5000 }).toBe(0);

    // When the run finishes the live view empties and the rule goes idle.
    engine.events.emit('blobEnd', `sha256:${'b'.repeat(64)}`, 'on-push');
    fakes.current().runs[1]!.finish();
    await expect.poll(() => page.locator('#live-rows tr').count(), { timeout: 5000 }).toBe(0);
    await expect.poll(() => page.locator('tr[data-rule="on-push"] td.state').innerText(), { timeout: 5000 }).toBe('idle');
    expect(await page.locator('#live-empty').isVisible()).toBe(true);
    expect(problems.join('\n')).toBe('');
    await context.close();
  });

  it('runs and cancels a rule with its buttons (same-origin POSTs with the browser\'s credentials)', async () => {
    const context = await browser.newContext({ httpCredentials: { username: 'ops', password: TOKEN }, viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    const problems = watch(page);
    await page.goto(daemon.url);
    const nightly = page.locator('tr[data-rule="nightly"]');
    const before = fakes.current().runs.length;
    await nightly.locator('button', { hasText: 'Run now' }).click();
    await expect.poll(() => page.locator('#message').innerText(), { timeout: 5000 }).toMatch(/^nightly: run #\d+ started$/);
    const run = await fakes.current().nextRun(before);
    expect(run.rule).toBe('nightly');
    await expect.poll(() => nightly.locator('td.state').innerText(), { timeout: 5000 }).toBe('running');
    const cancel = nightly.locator('button', { hasText: 'Cancel run' });
    await expect.poll(() => cancel.isVisible(), { timeout: 5000 }).toBe(true);
    await shot(page, '3-rule-running');
    await cancel.click();
    await expect.poll(() => page.locator('#message').innerText(), { timeout: 5000 }).toMatch(/: cancelling$/);
    expect(run.opts.signal?.aborted).toBe(true);
    await expect.poll(() => nightly.locator('td.state').innerText(), { timeout: 5000 }).toBe('idle');
    await expect.poll(() => nightly.innerText(), { timeout: 5000 }).toContain('cancelled');
    expect(await cancel.isVisible()).toBe(false);
    await shot(page, '4-rule-cancelled');
    expect(problems.join('\n')).toBe('');
    await context.close();
  });

  it('shows an execution with each artifact result and its error, failures first, paged', async () => {
    const before = fakes.current().runs.length;
    const exec = (await daemon.trigger('broken', { type: 'manual', at: new Date().toISOString() }, { full: true, artifacts: [], deletions: [] })).execution;
    const items = Array.from({ length: 70 }, (_, i) => ({
      source: `src/lib/app${i}:1`,
      destination: `dst/lib/app${i}:1`,
      status: (i % 10 === 3 ? 'failed' : 'copied') as 'failed' | 'copied',
      digest: `sha256:${String(i).padStart(64, '0')}`,
      tags: ['1'],
      bytes: 1024 * (i + 1),
      ...(i % 10 === 3 ? { reason: 'push manifest', error: { name: 'RegistryError', message: `manifest invalid <b>${i}</b>`, registry: 'dst', repository: `lib/app${i}`, status: 400, code: 'MANIFEST_INVALID' } } : {}),
    }));
    (await fakes.current().nextRun(before)).finish({
      status: 'partial',
      items,
      itemsOmitted: { failed: 0, other: 1200 },
      artifactLog: '/var/lib/ferry/runs/broken.jsonl',
      artifacts: { planned: 1270, copied: 1263, present: 0, skipped: 0, failed: 7 },
    });
    await eventually(() => daemon.history.peek(exec.id)?.status === 'partial');

    const context = await browser.newContext({ httpCredentials: { username: 'ops', password: TOKEN }, viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    const problems = watch(page);
    await page.goto(daemon.url);
    await page.locator(`#executions tr[data-execution="${exec.id}"] a`).click();
    await page.waitForURL(`**/executions/${exec.id}`);
    expect(await page.locator('h1').innerText()).toMatch(new RegExp(`Execution #${exec.id} · broken partial`));
    const rows = page.locator('#items tbody tr');
    expect(await rows.count()).toBe(50);
    const statuses = await rows.locator('td:first-child').allInnerTexts();
    expect(statuses.slice(0, 7)).toEqual(Array(7).fill('failed'));
    expect(statuses.slice(7).every((s) => s === 'copied')).toBe(true);
    expect(await rows.first().locator('td.error').innerText()).toBe('manifest invalid <b>3</b> (dst, lib/app3, HTTP 400, MANIFEST_INVALID)');
    expect(await page.locator('#items b').count()).toBe(0);
    expect(await page.locator('body').innerText()).toContain('page 1 of 2');
    // The execution keeps a bounded sample (as the sync report); the page says where the rest is.
    expect(await page.locator('#items-omitted').innerText()).toBe('… 1200 other results not kept here: every result is in /var/lib/ferry/runs/broken.jsonl (one JSON line per artifact)');
    await shot(page, '5-execution-failures-first');
    await page.locator('a[rel="next"]').first().click();
    await page.waitForURL(/page=2$/);
    expect(await rows.count()).toBe(20);
    expect(await page.locator('body').innerText()).toContain('page 2 of 2');
    expect(problems.join('\n')).toBe('');
    expect((await page.goto(`${daemon.url}/executions/99999`))?.status()).toBe(404);
    await context.close();
  });

  it('refreshes when opened as http://user:TOKEN@host/ (every fetch URL built from location.origin)', async () => {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    const problems = watch(page);
    const withCredentials = daemon.url.replace('http://', `http://admin:${TOKEN}@`);
    const res = await page.goto(`${withCredentials}/`);
    expect(res?.status()).toBe(200);
    await expect.poll(() => page.locator('#updated').getAttribute('data-ok'), { timeout: 5000 }).toBe('true');
    expect(await page.locator('#updated').innerText()).toMatch(/^updated \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/);
    // The buttons work the same way.
    const before = fakes.current().runs.length;
    await page.locator('tr[data-rule="nightly"] button', { hasText: 'Run now' }).click();
    await expect.poll(() => page.locator('#message').innerText(), { timeout: 5000 }).toMatch(/^nightly: run #\d+ started$/);
    (await fakes.current().nextRun(before)).finish();
    await shot(page, '6-opened-with-url-credentials');
    expect(problems.join('\n')).toBe('');
    await context.close();
  });
});

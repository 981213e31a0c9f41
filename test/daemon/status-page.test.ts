// The status page in headless Chromium (Debian's chromium driven by playwright-core): rules, triggers,
// last executions, escaped error text, and the live in-flight view refreshing without a reload.
// Skips, saying why, only when no Chromium is installed (scripts/ensure-chromium.mjs installs it).
import { existsSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { escapeHtml } from '../../src/daemon/status-page.js';
import { Daemon } from '../../src/daemon/service.js';
import { daemonConfig, eventually, fakeEngines } from './fakes.js';

const CHROMIUM = process.env.FERRY_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`status page browser test skipped: ${CHROMIUM} not found (run \`node scripts/ensure-chromium.mjs\` as root, or set FERRY_CHROMIUM)`);

const TOKEN = 'status-page-token-0123456789';
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

  it('asks for credentials, then shows rules, triggers, executions and the live view', async () => {
    const anonymous = await browser.newContext();
    const denied = await anonymous.request.get(daemon.url);
    expect(denied.status()).toBe(401);
    expect(denied.headersArray().filter((h) => h.name.toLowerCase() === 'www-authenticate').map((h) => h.value)).toContain('Basic realm="ferry", charset="UTF-8"');
    await anonymous.close();

    const context = await browser.newContext({ httpCredentials: { username: 'ops', password: TOKEN } });
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(e.message));
    const res = await page.goto(daemon.url);
    expect(res?.status()).toBe(200);
    expect(res?.headers()['content-security-policy']).toMatch(/script-src 'nonce-/);
    expect(await page.title()).toBe('Ferry');

    const rules = page.locator('#rules tbody tr');
    await expect.poll(() => rules.count()).toBe(3);
    const nightly = page.locator('tr[data-rule="nightly"]');
    expect(await nightly.innerText()).toContain('schedule 30 2 * * * (Europe/Berlin)');
    expect(await nightly.innerText()).toMatch(/\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ/); // next run
    expect(await page.locator('tr[data-rule="on-push"]').innerText()).toContain('event, deleteRemote');
    expect(await page.locator('tr[data-rule="on-push"] td.state').innerText()).toBe('running');
    expect(await page.locator('tr[data-rule="broken"]').innerText()).toContain('failed');

    // The error text is shown as text, never interpreted.
    const row = page.locator('#executions tr[data-execution="1"]');
    expect(await row.locator('.errors').innerText()).toBe(EVIL);
    expect(await page.locator('#executions img').count()).toBe(0);
    expect(await page.evaluate('typeof window.__xss')).toBe('undefined');

    // The live view refreshes from /api/status: bytes and blobs in flight appear without a reload.
    const live = page.locator('#live-rows tr[data-live="2"]');
    await expect.poll(() => live.count(), { timeout: 5000 }).toBe(1);
    expect(await live.innerText()).toContain('on-push');
    const engine = fakes.current() as unknown as { events: import('node:events').EventEmitter };
    engine.events.emit('blobStart', `sha256:${'b'.repeat(64)}`, 3 * 1024 * 1024, 'on-push');
    engine.events.emit('bytes', 2 * 1024 * 1024, 'on-push');
    await expect.poll(async () => (await live.locator('td').allInnerTexts()).slice(4), { timeout: 5000 }).toEqual(['2.0 MiB', '0', '1']);
    await expect.poll(() => page.locator('#updated').getAttribute('data-ok')).toBe('true');

    // When the run finishes the live view empties and the rule goes idle.
    engine.events.emit('blobEnd', `sha256:${'b'.repeat(64)}`, 'on-push');
    fakes.current().runs[1]!.finish();
    await expect.poll(() => page.locator('#live-rows tr').count(), { timeout: 5000 }).toBe(0);
    await expect.poll(() => page.locator('tr[data-rule="on-push"] td.state').innerText(), { timeout: 5000 }).toBe('idle');
    expect(await page.locator('#live-empty').isVisible()).toBe(true);
    expect(problems).toEqual([]);
    await context.close();
  });
});

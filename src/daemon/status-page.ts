// The status page at "/": server-rendered HTML, no build step, no external assets. Rules with their
// triggers, state and last execution; recent executions; and a live view of runs in flight that a small
// inline script refreshes from /api/status. Every value is escaped (server side) or set as textContent
// (client side); a Content-Security-Policy with a per-response nonce allows only the page's own script
// and style.
import { randomBytes } from 'node:crypto';
import { formatBytes } from '../config/units.js';
import type { StatusView } from './api.js';
import type { ExecutionSummary } from './execution.js';
import type { Route } from './server.js';
import { sendText } from './server.js';

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(value: unknown): string {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

function triggerText(trigger: StatusView['rules'][number]['trigger']): string {
  if (typeof trigger === 'string') return trigger;
  return `schedule ${trigger.schedule}${trigger.timezone ? ` (${trigger.timezone})` : ''}`;
}

function duration(ms: number | undefined): string {
  if (ms === undefined) return '';
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  return s < 120 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

function when(iso: string | undefined): string {
  return iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '';
}

function execCells(e: ExecutionSummary): string {
  const a = e.artifacts;
  return [
    `<td><span class="status s-${escapeHtml(e.status)}">${escapeHtml(e.status)}</span></td>`,
    `<td>${escapeHtml(e.trigger)}</td>`,
    `<td>${escapeHtml(when(e.startedAt ?? e.queuedAt))}</td>`,
    `<td>${escapeHtml(duration(e.durationMs))}</td>`,
    `<td>${escapeHtml(`${a.copied} copied, ${a.present} present, ${a.skipped} skipped, ${a.failed} failed`)}</td>`,
    `<td>${escapeHtml(formatBytes(e.bytes))}</td>`,
    `<td class="errors">${e.errors.map((m) => `<div>${escapeHtml(m)}</div>`).join('')}${e.errorCount > e.errors.length ? `<div>… ${e.errorCount - e.errors.length} more</div>` : ''}</td>`,
  ].join('');
}

export function renderStatusPage(view: StatusView, nonce: string): string {
  const rules = view.rules
    .map(
      (r) =>
        `<tr data-rule="${escapeHtml(r.name)}"><td>${escapeHtml(r.name)}</td><td>${escapeHtml(r.source)} → ${escapeHtml(r.destination)}</td>` +
        `<td>${escapeHtml(triggerText(r.trigger))}${r.enabled ? '' : ' (disabled)'}${r.deleteRemote ? ', deleteRemote' : ''}</td>` +
        `<td>${escapeHtml(when(r.nextRun))}</td><td class="state">${escapeHtml(r.state)}</td>` +
        `<td>${r.lastExecution ? `#${r.lastExecution.id} <span class="status s-${escapeHtml(r.lastExecution.status)}">${escapeHtml(r.lastExecution.status)}</span> ${escapeHtml(when(r.lastExecution.finishedAt))}` : 'never run'}</td></tr>`,
    )
    .join('\n');
  const recent = view.recent.map((e) => `<tr data-execution="${e.id}"><td>#${e.id}</td><td>${escapeHtml(e.rule)}</td>${execCells(e)}</tr>`).join('\n');
  const live = view.live
    .map((l) => `<tr data-live="${l.id}"><td>#${l.id}</td><td>${escapeHtml(l.rule)}</td><td>${escapeHtml(l.trigger)}</td><td>${escapeHtml(duration(l.elapsedMs))}</td><td>${escapeHtml(formatBytes(l.bytes))}</td><td>${l.artifacts.copied + l.artifacts.present + l.artifacts.skipped + l.artifacts.failed}</td><td>${l.inFlight.length}</td></tr>`)
    .join('\n');
  // The refresh script gets its data from JSON and writes it with textContent only.
  const script = `
(() => {
  const fmtBytes = (n) => { const u = ['B','KiB','MiB','GiB','TiB']; let i = 0; while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; } return (i ? n.toFixed(1) : n) + ' ' + u[i]; };
  const fmtDur = (ms) => ms < 1000 ? ms + ' ms' : ms < 120000 ? (ms / 1000).toFixed(1) + ' s' : Math.floor(ms / 60000) + ' min ' + Math.round((ms % 60000) / 1000) + ' s';
  const cell = (text) => { const td = document.createElement('td'); td.textContent = String(text); return td; };
  async function refresh() {
    try {
      const res = await fetch('/api/status', { headers: { accept: 'application/json' }, credentials: 'same-origin', cache: 'no-store' });
      if (!res.ok) throw new Error('HTTP ' + res.status);
      const s = await res.json();
      const body = document.getElementById('live-rows');
      const rows = s.live.map((l) => {
        const tr = document.createElement('tr');
        tr.dataset.live = String(l.id);
        const a = l.artifacts;
        for (const v of ['#' + l.id, l.rule, l.trigger, fmtDur(l.elapsedMs), fmtBytes(l.bytes), a.copied + a.present + a.skipped + a.failed, l.inFlight.length]) tr.append(cell(v));
        return tr;
      });
      body.replaceChildren(...rows);
      document.getElementById('live-empty').hidden = rows.length > 0;
      for (const r of s.rules) {
        const tr = document.querySelector('tr[data-rule="' + CSS.escape(r.name) + '"] td.state');
        if (tr) tr.textContent = r.state;
      }
      document.getElementById('bandwidth').textContent = s.bandwidth.display;
      const stamp = document.getElementById('updated');
      stamp.textContent = 'updated ' + new Date().toLocaleTimeString();
      stamp.dataset.ok = 'true';
    } catch (err) {
      document.getElementById('updated').textContent = 'refresh failed: ' + err.message;
    }
  }
  setInterval(refresh, 1000);
  refresh();
})();`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Ferry</title>
<style nonce="${nonce}">
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d232a; }
  h1 { font-size: 1.4rem; margin: 0 0 .2rem; } h2 { font-size: 1.1rem; margin: 1.6rem 0 .4rem; }
  table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #dde2e8; vertical-align: top; }
  th { background: #f3f5f8; font-weight: 600; } .muted { color: #66707a; } .errors div { color: #9b1c1c; font-size: 12px; word-break: break-word; }
  .status { padding: 0 .4rem; border-radius: .3rem; background: #e8ebef; } .s-ok { background: #d8f3dc; } .s-partial, .s-interrupted { background: #fff1c2; }
  .s-failed { background: #fbd5d5; } .s-running, .s-queued { background: #d6e6ff; } .s-cancelled { background: #eee; }
</style>
</head>
<body>
<h1>Ferry</h1>
<div class="muted">running since ${escapeHtml(when(view.startedAt))} · bandwidth cap <span id="bandwidth">${escapeHtml(view.bandwidth.display)}</span> · <span id="updated">live view loading…</span></div>
<h2>In flight</h2>
<table id="live"><thead><tr><th>execution</th><th>rule</th><th>trigger</th><th>elapsed</th><th>sent</th><th>artifacts done</th><th>blobs in flight</th></tr></thead>
<tbody id="live-rows">${live}</tbody></table>
<p id="live-empty" class="muted"${view.live.length ? ' hidden' : ''}>Nothing is running.</p>
<h2>Rules</h2>
<table id="rules"><thead><tr><th>rule</th><th>source → destination</th><th>trigger</th><th>next run</th><th>state</th><th>last execution</th></tr></thead>
<tbody>${rules}</tbody></table>
${view.rules.length ? '' : '<p class="muted">No rules configured.</p>'}
<h2>Recent executions</h2>
<table id="executions"><thead><tr><th>id</th><th>rule</th><th>status</th><th>trigger</th><th>started</th><th>duration</th><th>artifacts</th><th>sent</th><th>errors</th></tr></thead>
<tbody>${recent}</tbody></table>
${view.recent.length ? '' : '<p class="muted">No executions yet.</p>'}
<script nonce="${nonce}">${script}</script>
</body>
</html>
`;
}

export function statusPageRoute(view: () => StatusView): Route {
  return {
    method: 'GET',
    path: /^\/$/,
    access: 'token',
    handler: ({ res }) => {
      const nonce = randomBytes(16).toString('base64');
      sendText(res, 200, 'text/html; charset=utf-8', renderStatusPage(view(), nonce), {
        'content-security-policy': `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
      });
    },
  };
}

// The status page at "/" and one page per execution at "/executions/{id}": server-rendered HTML, no
// build step, no external assets. "/" shows the runs in flight (progress bars for artifacts and bytes
// done of planned, the current rate and a chart of the last minute), the queued follow-ups, the rules
// with run and cancel buttons, and the recent executions; a small inline script refreshes it from
// /api/status every second. The execution page lists each artifact's result and error, failures first,
// paged. Every time is UTC (said on the page).
//
// Security: every value is escaped (server side) or set as textContent (client side); a
// Content-Security-Policy with a per-response nonce allows only the page's own script and style. The
// page never holds the token: the browser authenticates with the HTTP Basic credentials it already
// has for the origin (the 401 prompt, or a URL such as http://admin:TOKEN@host:8480/). The script
// builds every request URL from `location.origin`, which carries no credentials (fetch refuses a
// URL with credentials, and a relative URL resolved against such a page would carry them). The
// buttons POST same-origin, which the server's Origin check admits and other sites' pages cannot.
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { formatBytes } from '../config/units.js';
import type { DaemonView, StatusView } from './api.js';
import { statusView } from './api.js';
import type { Execution, ExecutionSummary } from './execution.js';
import { HttpError, type Route, sendText } from './server.js';
import type { ArtifactResult } from '../transfer/stats.js';

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Artifacts per page of the execution page. */
export const ITEMS_PER_PAGE = 50;

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

/** An ISO time as shown everywhere on the page: UTC, to the second. */
function when(iso: string | undefined): string {
  return iso ? iso.replace('T', ' ').replace(/(?:\.\d+)?Z$/, 'Z') : '';
}

function counts(a: ExecutionSummary['artifacts']): string {
  return `${a.copied} copied, ${a.present} present, ${a.skipped} skipped, ${a.failed} failed`;
}

function execCells(e: ExecutionSummary): string {
  return [
    `<td><span class="status s-${escapeHtml(e.status)}">${escapeHtml(e.status)}</span></td>`,
    `<td>${escapeHtml(e.trigger)}</td>`,
    `<td>${escapeHtml(when(e.startedAt ?? e.queuedAt))}</td>`,
    `<td>${escapeHtml(duration(e.durationMs))}</td>`,
    `<td>${escapeHtml(counts(e.artifacts))}</td>`,
    `<td>${escapeHtml(formatBytes(e.bytes))}</td>`,
    `<td class="errors">${e.errors.map((m) => `<div>${escapeHtml(m)}</div>`).join('')}${e.errorCount > e.errors.length ? `<div>… ${e.errorCount - e.errors.length} more</div>` : ''}</td>`,
  ].join('');
}

function ruleRow(r: StatusView['rules'][number]): string {
  const last = r.lastExecution;
  return (
    `<tr data-rule="${escapeHtml(r.name)}"><td>${escapeHtml(r.name)}</td><td>${escapeHtml(r.source)} → ${escapeHtml(r.destination)}</td>` +
    `<td>${escapeHtml(triggerText(r.trigger))}${r.enabled ? '' : ' (disabled)'}${r.deleteRemote ? ', deleteRemote' : ''}</td>` +
    `<td>${escapeHtml(when(r.nextRun))}</td><td class="state">${escapeHtml(r.state)}</td>` +
    `<td class="last">${last ? `<a href="/executions/${last.id}">#${last.id}</a> <span class="status s-${escapeHtml(last.status)}">${escapeHtml(last.status)}</span> ${escapeHtml(when(last.finishedAt))}` : 'never run'}</td>` +
    `<td class="actions"><button type="button" class="run" data-action="run" data-rule="${escapeHtml(r.name)}"${r.enabled ? '' : ' disabled title="enabled: false in the config"'}>Run now</button>` +
    ` <button type="button" class="cancel" data-action="cancel" data-execution="${r.running ?? ''}"${r.running === undefined ? ' hidden' : ''}>Cancel run</button></td></tr>`
  );
}

const STYLE = `
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d232a; max-width: 1400px; }
  h1 { font-size: 1.4rem; margin: 0 0 .2rem; } h2 { font-size: 1.1rem; margin: 1.6rem 0 .4rem; }
  table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #dde2e8; vertical-align: top; }
  th { background: #f3f5f8; font-weight: 600; } .muted { color: #66707a; } .errors div, td.error { color: #9b1c1c; font-size: 12px; word-break: break-word; }
  .status { padding: 0 .4rem; border-radius: .3rem; background: #e8ebef; white-space: nowrap; } .s-ok, .s-copied, .s-present, .s-deleted { background: #d8f3dc; }
  .s-partial, .s-interrupted, .s-skipped, .s-kept { background: #fff1c2; } .s-failed { background: #fbd5d5; } .s-running, .s-queued { background: #d6e6ff; } .s-cancelled, .s-absent { background: #eee; }
  progress { width: 11rem; height: .9rem; vertical-align: middle; } .bar { white-space: nowrap; } .bar span { margin-left: .4rem; font-size: 12px; }
  svg.chart { width: 9rem; height: 1.8rem; vertical-align: middle; background: #f7f9fb; border: 1px solid #dde2e8; }
  svg.chart polyline { fill: none; stroke: #2463d6; stroke-width: 1.2; } .rate { white-space: nowrap; font-variant-numeric: tabular-nums; }
  button { font: inherit; padding: .1rem .6rem; cursor: pointer; } button.cancel { color: #9b1c1c; }
  #message { min-height: 1.4em; margin-top: .4rem; } #message[data-kind="error"] { color: #9b1c1c; }
  code { font-size: 12px; } nav.pages a, nav.pages span { margin-right: .8rem; } a { color: #1f55b8; }
`;

/** Sends a page with the headers every page of the daemon gets (CSP with this response's nonce). */
function sendPage(res: ServerResponse, html: (nonce: string) => string): void {
  const nonce = randomBytes(16).toString('base64');
  sendText(res, 200, 'text/html; charset=utf-8', html(nonce), {
    'content-security-policy': `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
  });
}

/** JSON inside a <script type="application/json">: "<" escaped so no text can close the element. */
function embeddedJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

// The browser side of "/": renders the live runs, the queued follow-ups, the rules' state and the
// recent executions from /api/status (first from the JSON embedded in the page), writing text only
// with textContent, and wires the buttons.
const SCRIPT = `
(() => {
  const $ = (id) => document.getElementById(id);
  // Never a relative URL: resolved against a page opened as http://user:token@host/ it would carry the
  // credentials, and fetch refuses such URLs. location.origin has none.
  const url = (path) => new URL(path, location.origin).href;
  const fmtBytes = (n) => { const u = ['B','KiB','MiB','GiB','TiB']; let i = 0; while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; } return (i ? n.toFixed(1) : n) + ' ' + u[i]; };
  const fmtDur = (ms) => ms < 1000 ? ms + ' ms' : ms < 120000 ? (ms / 1000).toFixed(1) + ' s' : Math.floor(ms / 60000) + ' min ' + Math.round((ms % 60000) / 1000) + ' s';
  const when = (iso) => iso ? iso.replace('T', ' ').replace(/(?:\\.\\d+)?Z$/, 'Z') : '';
  const el = (tag, props, ...children) => { const e = document.createElement(tag); Object.assign(e, props || {}); e.append(...children); return e; };
  const td = (...children) => el('td', {}, ...children.map((c) => typeof c === 'string' || typeof c === 'number' ? String(c) : c));
  const status = (s) => el('span', { className: 'status s-' + s, textContent: s });
  const link = (id) => el('a', { href: '/executions/' + id, textContent: '#' + id });
  const bar = (value, max, text, cls) => {
    const p = el('progress', { className: cls });
    if (max > 0) { p.max = max; p.value = Math.min(value, max); }
    return el('div', { className: 'bar' }, p, el('span', { textContent: text }));
  };
  const chart = (history) => {
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('class', 'chart');
    svg.setAttribute('viewBox', '0 0 60 20');
    svg.setAttribute('preserveAspectRatio', 'none');
    const peak = Math.max(1, ...history);
    const line = document.createElementNS(ns, 'polyline');
    line.setAttribute('points', history.map((b, i) => i + ',' + (19.5 - (b / peak) * 19).toFixed(2)).join(' '));
    const title = document.createElementNS(ns, 'title');
    title.textContent = 'bytes per second, last ' + history.length + ' s (peak ' + fmtBytes(peak) + '/s)';
    svg.append(title, line);
    return svg;
  };
  const cancelButton = (id, label) => el('button', { type: 'button', className: 'cancel', textContent: label }, );
  function render(s) {
    const live = s.live.map((l) => {
      const a = l.artifacts;
      const planned = l.planned ?? a.planned;
      const tr = el('tr');
      tr.dataset.live = String(l.id);
      const artifactText = (planned ? l.done + ' / ' + planned : l.done + ' (listing…)') + (a.failed ? ', ' + a.failed + ' failed' : '');
      // Bytes done (sent, or already at the destination) of planned; "+" while manifests still add to the plan.
      const doneBytes = l.bytesDone ?? l.bytes;
      const byteText = l.bytesPlanned ? fmtBytes(Math.min(doneBytes, l.bytesPlanned)) + ' / ' + fmtBytes(l.bytesPlanned) + (l.bytesComplete ? '' : '+') : fmtBytes(l.bytes) + ' sent';
      const cancel = cancelButton(l.id, 'Cancel');
      cancel.dataset.action = 'cancel';
      cancel.dataset.execution = String(l.id);
      tr.append(
        td(link(l.id)), td(l.rule), td(l.trigger), td(fmtDur(l.elapsedMs)),
        el('td', { className: 'artifacts' }, bar(l.done, planned, artifactText, 'p-artifacts')),
        el('td', { className: 'bytes' }, bar(doneBytes, l.bytesPlanned || 0, byteText, 'p-bytes')),
        el('td', { className: 'eta', textContent: l.etaSeconds === undefined || l.etaSeconds === null ? '--' : fmtDur(Math.round(l.etaSeconds) * 1000) }),
        el('td', { className: 'rate' }, chart(l.rateHistory), ' ', el('span', { className: 'rate-value', textContent: fmtBytes(l.rate) + '/s' })),
        td(String(l.inFlight.length)),
        td(l.queued ? 'follow-up queued' : ''),
        td(cancel),
      );
      return tr;
    });
    $('live-rows').replaceChildren(...live);
    $('live-empty').hidden = live.length > 0;
    const queued = s.queued.map((q) => {
      const tr = el('tr');
      tr.dataset.queued = String(q.id);
      const drop = cancelButton(q.id, 'Drop');
      drop.dataset.action = 'cancel';
      drop.dataset.execution = String(q.id);
      const work = q.full ? 'the whole rule' : q.artifactsRequested + ' artifact(s), ' + q.deletionsRequested + ' deletion(s)';
      tr.append(td(link(q.id)), td(q.rule), td(when(q.queuedAt)), td(q.trigger + (q.triggers > 1 ? ' + ' + (q.triggers - 1) + ' merged' : '')), td(work), td(drop));
      return tr;
    });
    $('queued-rows').replaceChildren(...queued);
    $('queued-empty').hidden = queued.length > 0;
    for (const r of s.rules) {
      const row = document.querySelector('tr[data-rule="' + CSS.escape(r.name) + '"]');
      if (!row) continue;
      row.querySelector('td.state').textContent = r.state;
      const last = r.lastExecution;
      row.querySelector('td.last').replaceChildren(...(last ? [link(last.id), ' ', status(last.status), ' ' + when(last.finishedAt)] : ['never run']));
      const cancel = row.querySelector('button.cancel');
      cancel.hidden = r.running === undefined;
      cancel.dataset.execution = r.running === undefined ? '' : String(r.running);
    }
    const recent = s.recent.map((e) => {
      const tr = el('tr');
      tr.dataset.execution = String(e.id);
      const a = e.artifacts;
      const errors = el('td', { className: 'errors' }, ...e.errors.map((m) => el('div', { textContent: m })));
      if (e.errorCount > e.errors.length) errors.append(el('div', { textContent: '… ' + (e.errorCount - e.errors.length) + ' more' }));
      tr.append(td(link(e.id)), td(e.rule), td(status(e.status)), td(e.trigger), td(when(e.startedAt ?? e.queuedAt)), td(e.durationMs === undefined ? '' : fmtDur(e.durationMs)),
        td(a.copied + ' copied, ' + a.present + ' present, ' + a.skipped + ' skipped, ' + a.failed + ' failed'), td(fmtBytes(e.bytes)), errors);
      return tr;
    });
    $('recent-rows').replaceChildren(...recent);
    $('bandwidth').textContent = s.bandwidth.display;
  }
  const message = (text, kind) => { const m = $('message'); m.textContent = text; m.dataset.kind = kind; };
  async function refresh() {
    try {
      const res = await fetch(url('/api/status'), { headers: { accept: 'application/json' }, credentials: 'same-origin', cache: 'no-store' });
      if (!res.ok) throw new Error('HTTP ' + res.status);
      render(await res.json());
      const stamp = $('updated');
      stamp.textContent = 'updated ' + when(new Date().toISOString());
      stamp.dataset.ok = 'true';
    } catch (err) {
      $('updated').textContent = 'refresh failed: ' + err.message;
      $('updated').dataset.ok = 'false';
    }
  }
  async function post(path) {
    const res = await fetch(url(path), { method: 'POST', headers: { accept: 'application/json' }, credentials: 'same-origin', cache: 'no-store' });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(body.error || 'HTTP ' + res.status);
    return body;
  }
  document.addEventListener('click', async (ev) => {
    const button = ev.target.closest('button[data-action]');
    if (!button || button.disabled) return;
    button.disabled = true;
    try {
      if (button.dataset.action === 'run') {
        const rule = button.dataset.rule;
        const r = await post('/api/rules/' + encodeURIComponent(rule) + '/run');
        message(rule + ': ' + (r.merged ? 'merged into the queued follow-up #' + r.execution.id : r.queued ? 'queued as follow-up #' + r.execution.id + ' (the rule is running)' : 'run #' + r.execution.id + ' started'), 'ok');
      } else if (button.dataset.action === 'cancel' && button.dataset.execution) {
        const r = await post('/api/executions/' + button.dataset.execution + '/cancel');
        message('#' + r.id + ': ' + (r.status === 'cancelling' ? 'cancelling' : 'cancelled'), 'ok');
      }
    } catch (err) {
      message('failed: ' + err.message, 'error');
    } finally {
      button.disabled = false;
      refresh();
    }
  });
  render(JSON.parse($('initial-status').textContent));
  setInterval(refresh, 1000);
  refresh();
})();`;

export function renderStatusPage(view: StatusView, nonce: string): string {
  const rules = view.rules.map(ruleRow).join('\n');
  const recent = view.recent.map((e) => `<tr data-execution="${e.id}"><td><a href="/executions/${e.id}">#${e.id}</a></td><td>${escapeHtml(e.rule)}</td>${execCells(e)}</tr>`).join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>Ferry</title>
<style nonce="${nonce}">${STYLE}</style>
</head>
<body>
<h1>Ferry</h1>
<div class="muted">running since ${escapeHtml(when(view.startedAt))}${view.sharedState ? ` · replica ${escapeHtml(view.replica)} (${view.leader ? 'the leader: runs the schedules' : 'not the leader: schedules run on another replica'})` : ''} · bandwidth cap <span id="bandwidth">${escapeHtml(view.bandwidth.display)}</span> · all times UTC · <span id="updated">live view loading…</span></div>
<div id="message" role="status"></div>
<h2>In flight</h2>
<table id="live"><thead><tr><th>execution</th><th>rule</th><th>trigger</th><th>elapsed</th><th>artifacts done / planned</th><th>bytes done / planned</th><th>ETA</th><th>rate (last minute)</th><th>blobs in flight</th><th>follow-up</th><th></th></tr></thead>
<tbody id="live-rows"></tbody></table>
<p id="live-empty" class="muted"${view.live.length ? ' hidden' : ''}>Nothing is running.</p>
<h2>Queued follow-ups</h2>
<table id="queued"><thead><tr><th>execution</th><th>rule</th><th>queued at</th><th>triggers</th><th>work</th><th></th></tr></thead>
<tbody id="queued-rows"></tbody></table>
<p id="queued-empty" class="muted"${view.queued.length ? ' hidden' : ''}>No follow-up is waiting.</p>
<h2>Rules</h2>
<table id="rules"><thead><tr><th>rule</th><th>source → destination</th><th>trigger</th><th>next run</th><th>state</th><th>last execution</th><th></th></tr></thead>
<tbody>${rules}</tbody></table>
${view.rules.length ? '' : '<p class="muted">No rules configured.</p>'}
<h2>Recent executions</h2>
<table id="executions"><thead><tr><th>id</th><th>rule</th><th>status</th><th>trigger</th><th>started</th><th>duration</th><th>artifacts</th><th>sent</th><th>errors</th></tr></thead>
<tbody id="recent-rows">${recent}</tbody></table>
${view.recent.length ? '' : '<p class="muted">No executions yet.</p>'}
<script type="application/json" id="initial-status">${embeddedJson(view)}</script>
<script nonce="${nonce}">${SCRIPT}</script>
</body>
</html>
`;
}

const ITEM_ORDER: Record<ArtifactResult['status'], number> = { failed: 0, skipped: 1, copied: 2, present: 3 };

function errorText(i: ArtifactResult): string {
  if (i.error) {
    const where = [i.error.registry, i.error.repository, i.error.status ? `HTTP ${i.error.status}` : undefined, i.error.code].filter(Boolean).join(', ');
    return `${i.error.message}${where ? ` (${where})` : ''}`;
  }
  return i.reason ?? '';
}

function shortDigest(d: string | undefined): string {
  return d ? `${d.slice(0, d.indexOf(':') + 13)}…` : '';
}

/** Results the execution keeps no record of (bounded, as the sync report), and where they all are. */
function omittedNote(e: Execution): string {
  const o = e.itemsOmitted;
  if (!o || (!o.failed && !o.other)) return '';
  const parts = [o.failed ? `${o.failed} more failed` : '', o.other ? `${o.other} other result${o.other === 1 ? '' : 's'}` : ''].filter(Boolean).join(' and ');
  return `<p class="muted" id="items-omitted">… ${escapeHtml(parts)} not kept here${e.artifactLog ? `: every result is in <code>${escapeHtml(e.artifactLog)}</code> (one JSON line per artifact)` : ''}</p>`;
}

/** The execution page: what was asked, what happened, each artifact's result (failures first, paged). */
export function renderExecutionPage(e: Execution, page: number, nonce: string): string {
  const items = [...e.items].sort((a, b) => ITEM_ORDER[a.status] - ITEM_ORDER[b.status]);
  const pages = Math.max(1, Math.ceil(items.length / ITEMS_PER_PAGE));
  const current = Math.min(Math.max(1, page), pages);
  const shown = items.slice((current - 1) * ITEMS_PER_PAGE, current * ITEMS_PER_PAGE);
  const rows = shown
    .map(
      (i) =>
        `<tr data-status="${escapeHtml(i.status)}"><td><span class="status s-${escapeHtml(i.status)}">${escapeHtml(i.status)}</span></td><td>${escapeHtml(i.source)}</td><td>${escapeHtml(i.destination)}</td>` +
        `<td>${escapeHtml(i.tags.join(', '))}</td><td><code title="${escapeHtml(i.digest)}">${escapeHtml(shortDigest(i.digest))}</code></td><td>${i.bytes ? escapeHtml(formatBytes(i.bytes)) : ''}</td><td class="error">${escapeHtml(errorText(i))}</td></tr>`,
    )
    .join('\n');
  const nav =
    pages > 1
      ? `<nav class="pages">${current > 1 ? `<a href="?page=${current - 1}" rel="prev">← previous</a>` : ''}<span>page ${current} of ${pages}</span>${current < pages ? `<a href="?page=${current + 1}" rel="next">next →</a>` : ''}</nav>`
      : '';
  const a = e.artifacts;
  const triggers = e.triggers.map((t) => `<li>${escapeHtml(t.type)}${'event' in t ? ` ${escapeHtml(t.event)}${t.repository ? ` ${escapeHtml(t.repository)}` : ''}` : ''}${'schedule' in t ? ` ${escapeHtml(t.schedule)}` : ''}${'of' in t ? ` of #${t.of}` : ''} at ${escapeHtml(when(t.at))}</li>`).join('');
  const deletions = e.deletions
    .map((d) => `<tr><td><span class="status s-${escapeHtml(d.status)}">${escapeHtml(d.status)}</span></td><td>${escapeHtml(d.source)}</td><td>${escapeHtml(d.destination)}</td><td class="error">${escapeHtml(d.reason)}</td></tr>`)
    .join('\n');
  const running = e.status === 'running' || e.status === 'queued';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
${running ? '<meta http-equiv="refresh" content="2">' : ''}
<title>Ferry · execution #${e.id}</title>
<style nonce="${nonce}">${STYLE}</style>
</head>
<body>
<p><a href="/">← status</a></p>
<h1>Execution #${e.id} · ${escapeHtml(e.rule)} <span class="status s-${escapeHtml(e.status)}" id="exec-status">${escapeHtml(e.status)}</span></h1>
<div class="muted">all times UTC · queued ${escapeHtml(when(e.queuedAt))}${e.startedAt ? ` · started ${escapeHtml(when(e.startedAt))}` : ''}${e.finishedAt ? ` · finished ${escapeHtml(when(e.finishedAt))}` : ''}${e.durationMs !== undefined ? ` · ${escapeHtml(duration(e.durationMs))}` : ''}${running ? ' · refreshing every 2 s' : ''}</div>
<p id="summary">${a.planned} planned: ${escapeHtml(counts(a))} · ${escapeHtml(formatBytes(e.bytes))} sent${e.bytesPlanned ? ` (${escapeHtml(formatBytes(e.bytesPlanned))} planned)` : ''} · blobs ${e.blobs.uploaded} uploaded, ${e.blobs.mounted} mounted, ${e.blobs.skipped} already there</p>
<h2>Triggers</h2>
<ul id="triggers">${triggers}</ul>${e.droppedTriggers ? `<p class="muted">… and ${e.droppedTriggers} more merged in (not listed)</p>` : ''}
${e.errors.length ? `<h2>Errors</h2><div class="errors" id="errors">${e.errors.slice(0, 20).map((m) => `<div>${escapeHtml(m)}</div>`).join('')}${e.errors.length > 20 ? `<div>… ${e.errors.length - 20} more (GET /api/executions/${e.id})</div>` : ''}</div>` : ''}
<h2>Artifacts (${items.length}${items.length ? ', failures first' : ''})</h2>
${omittedNote(e)}
${nav}
<table id="items"><thead><tr><th>result</th><th>source</th><th>destination</th><th>tags</th><th>digest</th><th>sent</th><th>error or reason</th></tr></thead>
<tbody>${rows}</tbody></table>
${items.length ? '' : '<p class="muted">No artifact results (yet).</p>'}
${nav}
${e.deletions.length ? `<h2>Deletions</h2><table id="deletions"><thead><tr><th>result</th><th>source</th><th>destination</th><th>reason</th></tr></thead><tbody>${deletions}</tbody></table>` : ''}
</body>
</html>
`;
}

export function statusPageRoutes(d: DaemonView): Route[] {
  return [
    {
      method: 'GET',
      path: /^\/$/,
      access: 'token',
      handler: ({ res }) => sendPage(res, (nonce) => renderStatusPage(statusView(d), nonce)),
    },
    {
      method: 'GET',
      path: /^\/executions\/(\d{1,15})$/,
      access: 'token',
      handler: async ({ res, params, url }) => {
        const id = Number(params[0]);
        const e = d.runner.current(id) ?? (await d.history.get(id));
        if (!e) throw new HttpError(404, `no execution ${id}`);
        const page = Number(url.searchParams.get('page') ?? 1);
        sendPage(res, (nonce) => renderExecutionPage(e, Number.isInteger(page) ? page : 1, nonce));
      },
    },
  ];
}

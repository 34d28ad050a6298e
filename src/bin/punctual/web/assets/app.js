// The punctual dashboard: one page that calls the same /api/v1 as any client.
// No framework and no build step: the DOM is built with `h`, never from HTML strings, so job
// data cannot inject markup. Every URL is relative, so the page works under any path prefix.
'use strict';

const REFRESH_MS = 5000;
const PAGE = 50;
const STATES = ['scheduled', 'ready', 'running', 'dead', 'completed'];
const SPANS = [
  { label: 'next hour', span: '1h', buckets: 12 },
  { label: 'next day', span: '24h', buckets: 24 },
  { label: 'next week', span: '7d', buckets: 28 },
  { label: 'next 30 days', span: '30d', buckets: 30 },
];

const app = {
  meta: null,
  token: sessionStorage.getItem('punctual-token') || '',
  timer: null,
  // Per queue page: the state shown, the cursors of the pages before, the current cursor.
  list: { queue: null, state: 'scheduled', back: [], cursor: '' },
  span: 0,
};

// ---------- small helpers ----------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const enc = encodeURIComponent;
const num = (n) => (n === null || n === undefined ? '–' : Number(n).toLocaleString('en'));

function ms(d) {
  if (d === null || d === undefined) return '–';
  if (d < 1000) return `${d} ms`;
  if (d < 60000) return `${(d / 1000).toFixed(1)} s`;
  if (d < 3600000) return `${Math.floor(d / 60000)} min ${Math.floor((d % 60000) / 1000)} s`;
  if (d < 86400000) return `${Math.floor(d / 3600000)} h ${Math.floor((d % 3600000) / 60000)} min`;
  return `${Math.floor(d / 86400000)} d ${Math.floor((d % 86400000) / 3600000)} h`;
}

// Replaces the view's content; absent parts (null, false) are left out.
function show(...parts) {
  document.getElementById('view').replaceChildren(...parts.filter((p) => p !== null && p !== undefined && p !== false));
}

// A time in the viewer's zone, with UTC beside it.
function when(iso) {
  if (!iso) return '–';
  const t = new Date(iso);
  const local = t.toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric',
    hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short',
  });
  return h('span', { class: 'time', title: iso }, local, h('small', {}, ` · ${iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z')}`));
}

function relative(iso) {
  if (!iso) return '';
  const d = new Date(iso).getTime() - Date.now();
  return d >= 0 ? `in ${ms(d)}` : `${ms(-d)} ago`;
}

function flash(text, bad) {
  const el = document.getElementById('flash');
  el.textContent = text;
  el.className = bad ? 'bad' : 'good';
  el.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { el.hidden = true; }, 6000);
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error && body.error.code;
  }
}

async function api(path, options) {
  const opts = options || {};
  const headers = { Accept: 'application/json' };
  if (app.token) headers.Authorization = `Bearer ${app.token}`;
  let body;
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  const response = await fetch(`api/v1${path}`, { method: opts.method || 'GET', headers, body });
  const json = await response.json().catch(() => null);
  if (response.status === 401) {
    showLogin();
    throw new ApiError(401, json);
  }
  if (!response.ok) throw new ApiError(response.status, json);
  return json;
}

// ---------- sign-in (bearer token) ----------

function showLogin() {
  stopRefresh();
  document.getElementById('view').replaceChildren();
  document.getElementById('login').hidden = false;
  document.getElementById('token').focus();
}

async function login(event) {
  event.preventDefault();
  app.token = document.getElementById('token').value.trim();
  const error = document.getElementById('login-error');
  try {
    app.meta = await fetchMeta();
    sessionStorage.setItem('punctual-token', app.token);
    document.getElementById('login').hidden = true;
    error.hidden = true;
    boot();
  } catch (e) {
    error.textContent = e.status === 401 ? 'That token was refused.' : e.message;
    error.hidden = false;
  }
}

async function fetchMeta() {
  const headers = { Accept: 'application/json' };
  if (app.token) headers.Authorization = `Bearer ${app.token}`;
  const response = await fetch('api/v1/meta', { headers });
  const json = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, json);
  return json;
}

// ---------- actions ----------

function canAct() {
  return app.meta && !app.meta.read_only;
}

function action(label, run, opts) {
  if (!canAct()) return null;
  const o = opts || {};
  return h('button', {
    class: o.danger ? 'danger' : '',
    'data-action': o.name || label.toLowerCase().replace(/\W+/g, '-'),
    onclick: async (e) => {
      e.preventDefault();
      if (o.confirm && !window.confirm(o.confirm)) return;
      e.target.disabled = true;
      try {
        const text = await run();
        flash(text || `${label}: done`);
      } catch (err) {
        flash(`${label}: ${err.message}`, true);
      } finally {
        e.target.disabled = false;
        refresh(true);
      }
    },
  }, label);
}

// ---------- refresh loop ----------

function stopRefresh() {
  clearTimeout(app.timer);
  app.timer = null;
}

function scheduleRefresh() {
  stopRefresh();
  app.timer = setTimeout(refresh, REFRESH_MS);
}

// True while the operator is typing in the view (a job id to find, a new due time): a
// refresh would rebuild the page and lose what they typed.
function typing() {
  const view = document.getElementById('view');
  return Array.from(view.querySelectorAll('input')).some((i) => i === document.activeElement || i.value);
}

async function refresh(forced) {
  stopRefresh();
  if (document.hidden) { scheduleRefresh(); return; }
  if (forced !== true && typing()) {
    document.getElementById('status').textContent = 'refresh paused while you type';
    scheduleRefresh();
    return;
  }
  const status = document.getElementById('status');
  try {
    await app.render();
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
    status.className = '';
  } catch (e) {
    if (e.status === 401) return;
    status.textContent = `refresh failed: ${e.message}`;
    status.className = 'bad';
  }
  scheduleRefresh();
}

// ---------- views ----------

function crumbs(...parts) {
  document.getElementById('crumbs').replaceChildren(...parts.flatMap((p) => [' / ', p]));
}

function card(label, value, extra) {
  return h('div', { class: 'card' }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value), extra ? h('div', { class: 'extra' }, extra) : null);
}

function lagText(lag) {
  if (!lag || !lag.count) return '–';
  const f = (v) => (v === null ? '> 60 s' : `≤ ${ms(v)}`);
  return `p50 ${f(lag.p50_ms)} · p99 ${f(lag.p99_ms)}`;
}

function rateText(throughput) {
  if (!throughput) return '–';
  return `${throughput.completed}/s`;
}

async function overview() {
  const data = await api('/queues');
  crumbs(h('span', {}, 'queues'));
  const rows = data.queues.map((q) => h('tr', { 'data-queue': q.queue },
    h('td', {}, h('a', { href: `#/queues/${enc(q.queue)}` }, q.queue), q.paused ? h('span', { class: 'badge paused' }, 'paused') : null),
    h('td', { class: 'n' }, num(q.scheduled)),
    h('td', { class: 'n' }, num(q.ready)),
    h('td', { class: 'n' }, num(q.running)),
    h('td', { class: `n ${q.dead ? 'warn' : ''}` }, num(q.dead)),
    h('td', { class: 'n' }, num(q.completed)),
    h('td', { class: 'n' }, rateText(q.throughput)),
    h('td', { class: `n ${q.oldest_overdue_ms > 5000 ? 'warn' : ''}` }, q.oldest_overdue_ms === null ? '–' : ms(q.oldest_overdue_ms)),
    h('td', {}, lagText(q.lag)),
    h('td', {}, q.next_due ? relative(q.next_due) : '–')));
  const sum = (k) => data.queues.reduce((a, q) => a + q[k], 0);
  show(
    h('div', { class: 'cards' },
      card('queues', num(data.queues.length)),
      card('scheduled', num(sum('scheduled'))),
      card('ready', num(sum('ready'))),
      card('running', num(sum('running'))),
      card('dead', num(sum('dead')))),
    h('table', { id: 'queues' },
      h('thead', {}, h('tr', {}, ['queue', 'scheduled', 'ready', 'running', 'dead', 'completed', 'completed/s', 'oldest overdue', 'promotion lag', 'next due'].map((c) => h('th', {}, c)))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 10, class: 'muted' }, 'No queues yet.')))),
    app.meta.promoter ? null : h('p', { class: 'muted' }, 'Promotion lag is measured by a promoter: serve this dashboard with `punctual promote --web-addr` to see it.'));
}

// The due-time chart: how many scheduled jobs fall due in each bucket.
function timelineChart(t) {
  const W = 720, H = 180, pad = 28;
  const counts = t.buckets.map((b) => b.count);
  const max = Math.max(1, t.overdue, ...counts);
  const n = counts.length + 1;
  const bw = (W - pad) / n;
  const bars = [];
  const all = [{ label: 'due', count: t.overdue, at: null }].concat(t.buckets.map((b) => ({ label: '', count: b.count, at: b.at })));
  all.forEach((b, i) => {
    const bh = Math.round((b.count / max) * (H - pad - 10));
    const x = pad + i * bw + 2;
    const title = b.at ? `${num(b.count)} due from ${new Date(b.at).toLocaleString()}` : `${num(b.count)} due now, not yet promoted`;
    bars.push(svg('rect', { class: i === 0 ? 'bar overdue' : 'bar', x, y: H - pad - bh, width: Math.max(1, bw - 4), height: bh, 'data-count': b.count }, svg('title', {}, title)));
  });
  const labels = [];
  const every = Math.ceil(t.buckets.length / 6);
  t.buckets.forEach((b, i) => {
    if (i % every) return;
    const d = new Date(b.at);
    const text = t.step_ms >= 86400000 ? d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' }) : d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
    labels.push(svg('text', { x: pad + (i + 1) * bw, y: H - 8, class: 'axis' }, text));
  });
  labels.push(svg('text', { x: pad, y: H - 8, class: 'axis' }, 'now'));
  labels.push(svg('text', { x: 2, y: 14, class: 'axis' }, num(max)));
  return svg('svg', { class: 'chart timeline', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'jobs due per interval' },
    svg('line', { x1: pad, y1: H - pad, x2: W, y2: H - pad, class: 'base' }), bars, labels);
}

// Lateness over time: the oldest overdue job, and (in a promoter) the p99 promotion lag.
function latenessChart(history) {
  const W = 720, H = 160, pad = 28;
  const s = history.samples;
  if (s.length < 2) return h('p', { class: 'muted' }, 'Collecting samples (one every 5 s)…');
  const overdue = s.map((x) => x.oldest_overdue_ms);
  const lag = s.map((x) => (x.lag && x.lag.p99_ms !== null ? x.lag.p99_ms : null));
  const max = Math.max(1, ...overdue, ...lag.filter((v) => v !== null));
  const x = (i) => pad + (i / (s.length - 1)) * (W - pad - 4);
  const y = (v) => H - pad - (v / max) * (H - pad - 10);
  const line = (vals, cls) => svg('polyline', { class: cls, points: vals.map((v, i) => (v === null ? null : `${x(i).toFixed(1)},${y(v).toFixed(1)}`)).filter(Boolean).join(' ') });
  return svg('svg', { class: 'chart lateness', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'lateness over time' },
    svg('line', { x1: pad, y1: H - pad, x2: W, y2: H - pad, class: 'base' }),
    line(overdue, 'overdue'), line(lag, 'lag'),
    svg('text', { x: 2, y: 14, class: 'axis' }, ms(max)),
    svg('text', { x: pad, y: H - 8, class: 'axis' }, new Date(s[0].at).toLocaleTimeString()),
    svg('text', { x: W - 70, y: H - 8, class: 'axis' }, 'now'));
}

function jobRow(queue, j, state) {
  const time = { scheduled: j.due_at, ready: j.due_at, running: j.lease_until, dead: j.died_at, completed: j.completed_at }[state];
  return h('tr', { 'data-job': j.id },
    h('td', {}, h('a', { href: `#/queues/${enc(queue)}/jobs/${enc(j.id)}` }, j.id)),
    h('td', {}, time ? when(time) : '–'),
    h('td', { class: 'n' }, j.attempts),
    h('td', {}, j.kind || '–'),
    h('td', { class: 'n' }, j.priority || ''),
    h('td', { class: 'err' }, j.last_error ? `${j.last_error.reason}: ${j.last_error.message}` : ''));
}

async function queuePage(name) {
  const l = app.list;
  if (l.queue !== name) Object.assign(l, { queue: name, state: 'scheduled', back: [], cursor: '' });
  const q = enc(name);
  const spec = SPANS[app.span];
  const [stats, page, timeline, history, schedules, limits] = await Promise.all([
    api(`/queues/${q}`),
    api(`/queues/${q}/jobs?state=${l.state}&limit=${PAGE}&cursor=${enc(l.cursor)}`),
    api(`/queues/${q}/timeline?span=${spec.span}&buckets=${spec.buckets}`),
    api(`/queues/${q}/history`),
    api(`/queues/${q}/schedules`),
    api(`/queues/${q}/limits`),
  ]);
  crumbs(h('a', { href: '#/' }, 'queues'), h('span', {}, name));
  const tabs = STATES.map((s) => h('button', {
    class: s === l.state ? 'tab on' : 'tab',
    'data-state': s,
    onclick: () => { Object.assign(l, { state: s, back: [], cursor: '' }); refresh(true); },
  }, `${s} (${num(stats[s])})`));
  const first = l.back.length * PAGE;
  const pager = h('div', { class: 'pager' },
    h('button', { disabled: l.back.length === 0, onclick: () => { l.cursor = l.back.pop() || ''; refresh(true); } }, '‹ previous'),
    h('span', {}, page.jobs.length ? `${num(first + 1)}–${num(first + page.jobs.length)} of ${num(page.total)}` : `0 of ${num(page.total)}`),
    h('button', { 'data-page': 'next', disabled: !page.next, onclick: () => { l.back.push(l.cursor); l.cursor = page.next; refresh(true); } }, 'next ›'));
  const search = h('form', { class: 'search', onsubmit: async (e) => {
    e.preventDefault();
    const id = e.target.elements.id.value.trim();
    if (!id) return;
    try {
      await api(`/queues/${q}/jobs/${enc(id)}`);
      location.hash = `#/queues/${q}/jobs/${enc(id)}`;
    } catch (err) {
      flash(err.status === 404 ? `No job ${id} in ${name}` : err.message, true);
    }
  } }, h('input', { name: 'id', placeholder: 'find a job by id', 'aria-label': 'job id' }), h('button', { type: 'submit' }, 'find'));
  const deadActions = l.state === 'dead' && stats.dead > 0 ? h('div', { class: 'actions' },
    action('Retry all dead', async () => `${(await api(`/queues/${q}/dead/retry`, { method: 'POST', body: { all: true } })).retried} jobs sent back`, { confirm: `Retry every dead job of ${name}?` }),
    action('Purge all dead', async () => `${(await api(`/queues/${q}/dead/purge`, { method: 'POST', body: { all: true } })).purged} jobs deleted`, { danger: true, confirm: `Delete every dead job of ${name}? This cannot be undone.` })) : null;
  const spanButtons = SPANS.map((s, i) => h('button', { class: i === app.span ? 'tab on' : 'tab', onclick: () => { app.span = i; refresh(true); } }, s.label));
  show(
    h('div', { class: 'title' }, h('h1', {}, name), stats.paused ? h('span', { class: 'badge paused' }, 'paused') : null,
      stats.paused ? action('Resume', async () => { await api(`/queues/${q}/resume`, { method: 'POST' }); return `${name} resumed`; })
        : action('Pause', async () => { await api(`/queues/${q}/pause`, { method: 'POST' }); return `${name} paused: workers take nothing`; }, { confirm: `Pause ${name}? Workers stop taking its jobs.` })),
    h('div', { class: 'cards' },
      card('scheduled', num(stats.scheduled), stats.next_due ? `next ${relative(stats.next_due)}` : null),
      card('ready', num(stats.ready)),
      card('running', num(stats.running)),
      card('dead', num(stats.dead)),
      card('completed', num(stats.completed)),
      card('oldest overdue', stats.oldest_overdue_ms === null ? '–' : ms(stats.oldest_overdue_ms)),
      card('throughput', rateText(stats.throughput), stats.throughput ? `${stats.throughput.scheduled}/s scheduled` : null),
      card('promotion lag', lagText(stats.lag)),
      card('partitions', stats.partitions)),
    h('section', {}, h('h2', {}, 'Due'), h('div', { class: 'tabs' }, spanButtons), timelineChart(timeline),
      h('p', { class: 'muted' }, `${num(timeline.overdue)} due and waiting for promotion · ${num(timeline.later)} due later than the chart`)),
    h('section', {}, h('h2', {}, 'Lateness'), latenessChart(history),
      h('p', { class: 'legend' }, h('span', { class: 'key overdue' }, 'oldest overdue job'), h('span', { class: 'key lag' }, 'promotion lag p99'))),
    h('section', {}, h('h2', {}, 'Jobs'), search, h('div', { class: 'tabs' }, tabs), deadActions,
      h('table', { id: 'jobs' },
        h('thead', {}, h('tr', {}, ['id', { scheduled: 'due', ready: 'due', running: 'lease until', dead: 'died', completed: 'completed' }[l.state], 'attempts', 'kind', 'priority', 'last error'].map((c) => h('th', {}, c)))),
        h('tbody', {}, page.jobs.length ? page.jobs.map((j) => jobRow(name, j, l.state)) : h('tr', {}, h('td', { colspan: 6, class: 'muted' }, `No ${l.state} jobs.`)))),
      pager),
    h('section', {}, h('h2', {}, 'Recurring schedules'), schedules.schedules.length ? h('table', { id: 'schedules' },
      h('thead', {}, h('tr', {}, ['id', 'when', 'zone', 'next fire times', 'state'].map((c) => h('th', {}, c)))),
      h('tbody', {}, schedules.schedules.map((s) => h('tr', {},
        h('td', {}, s.id), h('td', {}, s.cron || `every ${s.every}`), h('td', {}, s.tz),
        h('td', {}, s.next_fires.map((f) => h('div', {}, when(f.at)))),
        h('td', {}, s.paused ? 'paused' : 'active'))))) : h('p', { class: 'muted' }, 'None.')),
    h('section', {}, h('h2', {}, 'Limits'), limits.rules.length ? h('table', { id: 'limits' },
      h('thead', {}, h('tr', {}, ['key', 'rate', 'concurrency', 'deferred'].map((c) => h('th', {}, c)))),
      h('tbody', {}, limits.rules.map((r) => h('tr', {},
        h('td', {}, r.key), h('td', {}, r.rate ? `${r.rate} per ${r.per}` : '–'), h('td', {}, r.concurrency || '–'),
        h('td', { class: 'n' }, num(limits.deferred[r.key] || 0)))))) : h('p', { class: 'muted' }, 'None.')));
}

// A field of the job page; an optional field without a value is left out.
function field(label, value, always) {
  const empty = value === null || value === undefined || value === '';
  if (empty && !always) return [];
  return [h('dt', {}, label), h('dd', {}, empty ? '–' : value)];
}

function pretty(value) {
  return h('pre', { class: 'json' }, JSON.stringify(value, null, 2));
}

async function jobPage(name, id) {
  const q = enc(name), path = `/queues/${q}/jobs/${enc(id)}`;
  crumbs(h('a', { href: '#/' }, 'queues'), h('a', { href: `#/queues/${q}` }, name), h('span', {}, id));
  let job;
  try {
    job = await api(path);
  } catch (e) {
    if (e.status !== 404) throw e;
    show(h('h1', {}, id), h('p', { class: 'muted', id: 'gone' }, `No job ${id} in ${name}: it never existed, or it ended and was deleted.`));
    return;
  }
  const events = await api(`${path}/events`);
  const reschedule = canAct() && ['scheduled', 'ready', 'dead'].includes(job.state) ? h('form', { class: 'inline', onsubmit: async (e) => {
    e.preventDefault();
    const local = e.target.elements.at.value;
    if (!local) return;
    try {
      const r = await api(`${path}/reschedule`, { method: 'POST', body: { at: new Date(local).toISOString() } });
      flash(`Due ${new Date(r.due_at).toLocaleString()}`);
    } catch (err) { flash(`Reschedule: ${err.message}`, true); }
    e.target.reset();
    refresh(true);
  } }, h('input', { type: 'datetime-local', name: 'at', step: 1, 'aria-label': 'new due time (your time zone)' }), h('button', { type: 'submit', 'data-action': 'reschedule' }, 'Reschedule')) : null;
  const actions = h('div', { class: 'actions' },
    ['scheduled', 'ready', 'dead'].includes(job.state) ? action('Run now', async () => { await api(`${path}/reschedule`, { method: 'POST', body: { in: '0s' } }); return 'Due now'; }) : null,
    job.state === 'dead' ? action('Retry', async () => { await api(`/queues/${q}/dead/retry`, { method: 'POST', body: { ids: [id] } }); return 'Sent back to run, attempts reset'; }) : null,
    job.state === 'dead' ? action('Purge', async () => { await api(`/queues/${q}/dead/purge`, { method: 'POST', body: { ids: [id] } }); return 'Deleted'; }, { danger: true, confirm: `Delete ${id}? This cannot be undone.` }) : null,
    ['scheduled', 'ready', 'running'].includes(job.state) ? action('Cancel', async () => { const r = await api(`${path}?wait=5s`, { method: 'DELETE' }); return `Cancel: ${r.cancelled}`; }, { danger: true, confirm: `Cancel ${id}?` }) : null,
    reschedule);
  const err = job.last_error;
  const failures = events.events.filter((e) => e.reason);
  show(
    h('div', { class: 'title' }, h('h1', {}, id), h('span', { class: `badge state ${job.state}`, id: 'state' }, job.state)),
    actions,
    h('dl', { class: 'fields' },
      field('queue', name, true),
      field('due', job.due_at ? [when(job.due_at), ' ', h('span', { class: 'muted' }, relative(job.due_at))] : null, true),
      field('attempts', `${job.attempts}${job.max_attempts ? ` of ${job.max_attempts}` : ''}`, true),
      field('kind', job.kind, true),
      field('priority', job.priority || null),
      field('created', job.created_at ? when(job.created_at) : null, true),
      field('lease until', job.lease_until ? when(job.lease_until) : null),
      field('died', job.died_at ? when(job.died_at) : null),
      field('completed', job.completed_at ? when(job.completed_at) : null),
      field('ran for', job.run_time),
      field('expires', job.expires_at ? when(job.expires_at) : null),
      field('timeout', job.timeout),
      field('limit key', job.limit_key),
      field('limited', job.limited ? `by ${job.limited.by} until ${new Date(job.limited.until).toLocaleString()}` : null),
      field('cancel requested', job.cancel_requested ? 'yes' : null),
      field('on death', job.compensation ? `schedules ${job.compensation}` : null)),
    h('section', {}, h('h2', {}, 'Last error'), err ? h('div', { class: 'error-box', id: 'last-error' },
      h('strong', {}, err.reason), ` on attempt ${err.attempt}, `, when(err.at), h('pre', {}, err.message)) : h('p', { class: 'muted' }, 'None.')),
    h('section', {}, h('h2', {}, 'Error history'), events.event_log === null
      ? h('p', { class: 'muted' }, `The event log of ${name} is off, so only the last error is kept (turn it on: punctual queue set ${name} --event-log 100000).`)
      : failures.length ? h('table', {}, h('tbody', {}, failures.map((e) => h('tr', {}, h('td', {}, when(e.at)), h('td', {}, e.change), h('td', {}, e.attempt === null ? '' : `attempt ${e.attempt}`), h('td', {}, e.reason)))))
        : h('p', { class: 'muted' }, 'No errors in the recent log.')),
    h('section', {}, h('h2', {}, 'Data'), job.data_error ? h('p', { class: 'error' }, job.data_error) : pretty(job.data)),
    job.result !== null || job.result_note ? h('section', {}, h('h2', {}, 'Result'), job.result_note ? h('p', {}, job.result_note) : pretty(job.result)) : null,
    h('section', {}, h('h2', {}, 'Events'), events.events.length ? h('table', { id: 'events' }, h('tbody', {}, events.events.map((e) => h('tr', {},
      h('td', {}, when(e.at)), h('td', {}, e.change), h('td', {}, e.attempt === null ? '' : e.attempt), h('td', {}, e.reason || '')))))
      : h('p', { class: 'muted' }, events.event_log === null ? 'The event log is off for this queue.' : 'None in the recent log.')));
}

// ---------- routing ----------

function route() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'queues' && parts.length === 2) app.render = () => queuePage(parts[1]);
  else if (parts[0] === 'queues' && parts[2] === 'jobs' && parts.length === 4) app.render = () => jobPage(parts[1], parts[3]);
  else app.render = overview;
  window.scrollTo(0, 0);
  refresh(true);
}

async function start() {
  document.getElementById('login').addEventListener('submit', login);
  try {
    app.meta = await fetchMeta();
  } catch (e) {
    if (e.status === 401) { showLogin(); return; }
    show(h('p', { class: 'error' }, `Cannot reach the API: ${e.message}`));
    return;
  }
  boot();
}

function boot() {
  document.getElementById('mode').textContent = app.meta.read_only ? 'read-only' : '';
  if (!boot.done) {
    window.addEventListener('hashchange', route);
    document.addEventListener('visibilitychange', () => { if (!document.hidden) refresh(); });
    boot.done = true;
  }
  route();
}

document.addEventListener('DOMContentLoaded', start);

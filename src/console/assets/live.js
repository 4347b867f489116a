// Live: decision rows as the audit writer commits them (server-sent events
// from /api/events), newest first. The server sends at most 100 rows a
// second per page, evenly sampled, and says how many it saw; the page keeps
// at most MAX_ROWS rows and says when it shows a sample.
'use strict';
(() => {
  const {el, link, verdictClass, app} = egress;
  const MAX_ROWS = 500;
  const COLUMNS = ['time', 'role', 'source', 'kind', 'host:port', 'method', 'path', 'verdict', 'reason', ''];

  const filters = {
    role: el('input', {id: 'f-role', placeholder: 'role', size: '10'}),
    verdict: el('select', {id: 'f-verdict'}, el('option', {value: ''}, 'any verdict'),
      el('option', {value: 'allow'}, 'allow'), el('option', {value: 'deny'}, 'deny'), el('option', {value: 'report'}, 'report')),
    host: el('input', {id: 'f-host', placeholder: 'host contains', size: '16'}),
    reason: el('input', {id: 'f-reason', placeholder: 'reason', size: '14'}),
  };
  const pause = el('button', {id: 'pause', type: 'button'}, 'Pause');
  const status = el('span', {id: 'sampling', class: 'status'}, 'connecting…');
  const body = el('tbody', {id: 'rows'});
  app().append(el('div', {class: 'toolbar'}, ...Object.values(filters), pause, status),
    el('table', {id: 'live'}, el('thead', {}, el('tr', {}, ...COLUMNS.map((c) => el('th', {}, c)))), body));

  const rowData = new WeakMap();
  let paused = false;
  let missedWhilePaused = 0;

  function matches(e) {
    const role = filters.role.value.trim(), verdict = filters.verdict.value;
    const host = filters.host.value.trim().toLowerCase(), reason = filters.reason.value.trim();
    return (!role || (e.role || '') === role) && (!verdict || e.decision === verdict) &&
      (!host || String(e.host || '').toLowerCase().includes(host)) && (!reason || e.reason === reason);
  }

  function applyFilters() {
    for (const tr of body.children) tr.hidden = !matches(rowData.get(tr));
  }
  for (const input of Object.values(filters)) input.addEventListener('input', applyFilters);

  function render(e) {
    const hostPort = (e.host || '') + (e.port ? ':' + e.port : '');
    const details = link('/event', {request_id: e.request_id || ''}, 'details');
    const extra = el('td', {}, details);
    if (e.decision === 'deny' && e.host && e.port) {
      extra.append(' ', link('/rule', {role: e.role || '', host: e.host, port: String(e.port), kind: e.kind || 'connect'}, '→ rule'));
    }
    const tr = el('tr', {class: 'row'},
      el('td', {}, String(e.ts || '').slice(11, 23)), el('td', {}, e.role || '-'), el('td', {}, e.client_addr),
      el('td', {}, e.kind), el('td', {class: 'wrap host'}, hostPort), el('td', {}, e.method),
      el('td', {class: 'path'}, e.path), el('td', {class: verdictClass(e.decision)}, e.decision),
      el('td', {class: 'reason'}, e.reason), extra);
    tr.setAttribute('data-role', e.role || '');
    tr.setAttribute('data-verdict', e.decision || '');
    rowData.set(tr, e);
    tr.hidden = !matches(e);
    return tr;
  }

  const source = new EventSource('/api/events');
  source.addEventListener('rows', (message) => {
    const rows = JSON.parse(message.data);  // newest first
    if (paused) {
      missedWhilePaused += rows.length;
      return;
    }
    const fragment = document.createDocumentFragment();
    for (const e of rows) fragment.append(render(e));
    body.prepend(fragment);
    while (body.children.length > MAX_ROWS) body.lastChild.remove();
  });
  source.addEventListener('stats', (message) => {
    const s = JSON.parse(message.data);
    let text = s.seen > s.sent ? 'sampling: showing ' + s.sent + ' of ' + s.seen + ' attempts' : 'showing all ' + s.seen + ' attempts';
    if (paused) text += '; paused, ' + missedWhilePaused + ' not shown';
    status.textContent = text;
    status.setAttribute('data-seen', String(s.seen));
    status.setAttribute('data-sent', String(s.sent));
  });
  source.addEventListener('error', () => { status.textContent = 'disconnected; retrying…'; });

  pause.addEventListener('click', () => {
    paused = !paused;
    missedWhilePaused = 0;
    pause.textContent = paused ? 'Resume' : 'Pause';
  });
})();

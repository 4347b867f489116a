// Summary: for a window, requests and refusals per role over time (an SVG
// bar chart per role, drawn here), per-role totals, the stats sections of
// `egress audit stats`, and each role's top allowed and refused hosts.
'use strict';
(() => {
  const {el, svg, getJSON, table, app, fail} = egress;
  const windowSelect = el('select', {id: 'window'}, ...['15m', '1h', '6h', '24h', '7d'].map((w) => el('option', {value: w}, w)));
  const out = el('div', {id: 'summary'});
  app().append(el('div', {class: 'toolbar'}, el('label', {for: 'window'}, 'Window '), windowSelect), out);
  const initial = new URLSearchParams(window.location.search).get('window') || '1h';
  windowSelect.value = initial;

  function chart(role, buckets, series) {
    const W = 360, H = 120, pad = 18;
    const max = Math.max(1, ...buckets.map((b) => (series.get(b) || {requests: 0}).requests));
    const width = (W - pad) / Math.max(1, buckets.length);
    const node = svg('svg', {width: W, height: H + pad, viewBox: '0 0 ' + W + ' ' + (H + pad), role: 'img'});
    let requests = 0, refused = 0;
    buckets.forEach((b, i) => {
      const v = series.get(b) || {requests: 0, refused: 0};
      requests += v.requests;
      refused += v.refused;
      const x = pad + i * width, h = (v.requests / max) * H, r = (v.refused / max) * H;
      const bar = svg('rect', {class: 'requests', x, y: H - h, width: Math.max(1, width - 1), height: h});
      const title = svg('title');
      title.textContent = b + ': ' + v.requests + ' requests, ' + v.refused + ' refused';
      bar.append(title);
      node.append(bar, svg('rect', {class: 'refused', x, y: H - r, width: Math.max(1, width - 1), height: r}));
    });
    const label = svg('text', {x: pad, y: H + 13});
    label.textContent = (buckets[0] || '') + ' … ' + (buckets[buckets.length - 1] || '');
    const scale = svg('text', {x: 0, y: 10});
    scale.textContent = String(max);
    node.append(label, scale);
    node.setAttribute('data-requests', String(requests));
    node.setAttribute('data-refused', String(refused));
    node.setAttribute('data-role', role);
    return el('div', {class: 'chart'}, el('h2', {}, role === '' ? '(no role)' : role), node,
      el('div', {class: 'totals', 'data-role': role, 'data-requests': String(requests), 'data-refused': String(refused)},
        requests + ' requests, ' + refused + ' refused'));
  }

  function render(data) {
    out.replaceChildren();
    const buckets = [...new Set(data.timeline.map((r) => r.bucket))].sort();
    const byRole = new Map();
    for (const r of data.timeline) {
      if (!byRole.has(r.role)) byRole.set(r.role, new Map());
      byRole.get(r.role).set(r.bucket, {requests: r.requests, refused: r.refused});
    }
    out.append(el('p', {class: 'status'}, 'Since ' + data.since + ' (UTC); blue: requests, red: refused.'));
    const charts = el('div', {class: 'charts', id: 'charts'});
    for (const [role, series] of [...byRole.entries()].sort()) charts.append(chart(role, buckets, series));
    if (!byRole.size) charts.append(el('p', {}, 'No requests in this window.'));
    out.append(charts);

    const perRole = el('div', {class: 'grid'});
    for (const [role, top] of Object.entries(data.roles)) {
      perRole.append(el('div', {}, el('h2', {}, 'Role ' + role + ': top destinations'), table(['host', 'requests'], top.allowed || []),
        el('h2', {}, 'Role ' + role + ': top refused'), table(['host', 'requests'], top.refused || [])));
    }
    out.append(perRole);
    const sections = el('div', {class: 'grid'});
    for (const s of data.sections) {
      const columns = s.rows.length ? Object.keys(s.rows[0]) : [];
      sections.append(el('div', {}, el('h2', {}, s.title), table(columns, s.rows)));
    }
    out.append(sections);
  }

  function load() {
    getJSON('/api/summary?' + new URLSearchParams({window: windowSelect.value})).then(render).catch(fail);
  }
  windowSelect.addEventListener('change', load);
  load();
})();

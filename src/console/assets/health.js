// Health: the policy in force and its last load, the audit store, a chain
// check of the newest rows, DNS and certificate cache figures, this feed.
'use strict';
(() => {
  const {el, getJSON, app, fail} = egress;
  function pairs(title, object, id) {
    const list = el('dl', {id});
    for (const [k, v] of Object.entries(object)) {
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) continue;
      list.append(el('dt', {}, k), el('dd', {}, Array.isArray(v) ? v.join(', ') : String(v)));
    }
    return el('section', {}, el('h2', {}, title), list);
  }
  getJSON('/api/health').then((h) => {
    const chain = h.chain.ok ? 'ok: ' + h.chain.rows + ' newest rows (' + h.chain.first_id + '..' + h.chain.last_id + ') chain correctly'
      : 'BROKEN: ' + h.chain.problem;
    app().append(el('div', {class: 'grid'},
      pairs('Policy in force', h.policy, 'policy'),
      el('section', {}, el('h2', {}, 'Audit chain'), el('p', {id: 'chain', class: h.chain.ok ? 'allow' : 'deny'}, chain)),
      pairs('Audit store', Object.assign({db: h.audit.db, size_bytes: h.audit.size_bytes}, h.audit.figures), 'audit'),
      pairs('DNS cache', h.dns, 'dns'),
      pairs('TLS certificate cache', h.tls, 'tls'),
      pairs('Console', h.console, 'console')));
  }).catch(fail);
})();

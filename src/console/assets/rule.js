// Refused → rule: the refused destinations of the last day, and for the one
// chosen the entry `egress policy suggest` would write, where it goes, the
// `egress policy diff` line of adding it and the whole candidate policy,
// each copyable. Nothing is written: the admin edits the policy file.
'use strict';
(() => {
  const {el, getJSON, table, link, app, fail} = egress;
  const list = el('div', {id: 'refused'});
  const detail = el('div', {id: 'suggestion'});
  app().append(detail, el('h2', {}, 'Refused destinations (24h)'), list);

  function copyable(id, text) {
    const pre = el('pre', {id});
    pre.textContent = text;  // whole and unescaped: it is meant to be copied (still text, never markup)
    const button = el('button', {type: 'button'}, 'Copy');
    button.addEventListener('click', () => navigator.clipboard.writeText(text).then(() => { button.textContent = 'Copied'; }));
    return el('div', {}, pre, button);
  }

  // The console's own words, whole (el() would cut them like worker values).
  function note(text) {
    const p = el('p', {class: 'error', id: 'note'});
    p.textContent = text || '';
    return p;
  }

  function show(params) {
    detail.replaceChildren(el('p', {class: 'status'}, 'Asking egress policy suggest…'));
    getJSON('/api/rule?' + new URLSearchParams(params)).then((s) => {
      detail.replaceChildren(
        el('h2', {}, 'To allow ' + params.host + ':' + params.port + (params.role ? ' for role ' + params.role : '')),
        el('p', {}, 'Add this entry under ', el('code', {id: 'placement'}, s.placement), ' in ', el('code', {}, s.policy_file), ':'),
        copyable('entry', s.entry),
        el('h2', {}, 'egress policy diff'),
        copyable('diff', s.diff),
        note(s.note),
        el('h2', {}, 'Candidate policy (the file with the entry added; comments are not kept)'),
        copyable('candidate', s.candidate));
    }).catch((error) => detail.replaceChildren(el('p', {class: 'error'}, error.message)));
  }

  const query = new URLSearchParams(window.location.search);
  if (query.get('host')) {
    show({role: query.get('role') || '', host: query.get('host'), port: query.get('port') || '443', kind: query.get('kind') || 'connect'});
  }
  getJSON('/api/refused?window=24h').then((data) => {
    list.append(table(['role', 'host', 'port', 'kind', 'reason', 'requests', 'last_ts', ''], data.refused, (c, r) => {
      if (c !== '') return el('td', {class: 'wrap'}, r[c]);
      const params = {role: r.role, host: r.host, port: String(r.port || ''), kind: r.kind};
      const a = link('/rule', params, 'suggest rule');
      a.addEventListener('click', (event) => { event.preventDefault(); history.replaceState(null, '', a.href); show(params); });
      return el('td', {}, a);
    }));
    if (!data.refused.length) list.append(el('p', {}, 'Nothing was refused in the last 24 hours.'));
  }).catch(fail);
})();

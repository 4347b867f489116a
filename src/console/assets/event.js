// Details of one attempt: its decision and close rows, every field as text.
'use strict';
(() => {
  const {el, getJSON, app, fail} = egress;
  const FIELDS = ['ts', 'event', 'request_id', 'mode', 'role', 'client_addr', 'kind', 'method', 'scheme', 'host', 'port',
    'path', 'sni', 'alpn', 'decision', 'rule', 'reason', 'upstream_addr', 'status', 'bytes_up', 'bytes_down',
    'duration_ms', 'error', 'id', 'hash'];
  const id = new URLSearchParams(window.location.search).get('request_id') || '';
  getJSON('/api/event?' + new URLSearchParams({request_id: id})).then((data) => {
    if (!data.events.length) app().append(el('p', {}, 'No rows for this request id.'));
    for (const e of data.events) {
      const list = el('dl', {class: 'event'});
      for (const f of FIELDS) {
        if (e[f] === null || e[f] === undefined || e[f] === '') continue;
        list.append(el('dt', {}, f), el('dd', {}, f === 'hash' ? String(e[f]).slice(0, 16) + '…' : e[f]));
      }
      app().append(el('h2', {}, e.event === 'close' ? 'Close' : 'Decision'), list);
    }
  }).catch(fail);
})();

// Shared by every console page. Every value from the audit log came from an
// untrusted worker: it only ever reaches the page as a text node
// (textContent) or an attribute set by setAttribute on a fixed attribute
// name; no page builds HTML from strings.
'use strict';

const egress = (() => {
  const MAX_TEXT = 160;

  // Control characters become visible \xNN escapes; long values are cut.
  function shorten(value, max = MAX_TEXT) {
    if (value === null || value === undefined) return '';
    let text = String(value).replace(/[\u0000-\u001f\u007f-\u009f]/g,
      (c) => '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0'));
    if (text.length > max) text = text.slice(0, max) + '… (' + text.length + ' chars)';
    return text;
  }

  // el('td', {class: 'deny'}, 'text', child): children are text or nodes.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(shorten(child)));
    }
    return node;
  }

  const SVG = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    return node;
  }

  async function getJSON(url) {
    const response = await fetch(url, {credentials: 'same-origin', headers: {Accept: 'application/json'}});
    if (response.status === 401) {
      window.location.assign('/login');
      throw new Error('not logged in');
    }
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || ('HTTP ' + response.status));
    return body;
  }

  function verdictClass(verdict) {
    return verdict === 'deny' ? 'deny' : verdict === 'report' ? 'report' : 'allow';
  }

  // A link inside the console: the path is fixed, values only in the query.
  function link(path, params, text) {
    const query = new URLSearchParams(params).toString();
    return el('a', {href: path + (query ? '?' + query : '')}, text);
  }

  function table(columns, rows, cell) {
    const head = el('tr', {}, ...columns.map((c) => el('th', {}, c)));
    const body = el('tbody');
    for (const row of rows) body.append(el('tr', {}, ...columns.map((c) => cell ? cell(c, row) : el('td', {class: 'wrap'}, row[c]))));
    return el('table', {}, el('thead', {}, head), body);
  }

  const app = () => document.getElementById('app');
  function fail(error) {
    app().append(el('p', {class: 'error'}, 'Could not load: ' + error.message));
  }

  return {shorten, el, svg, getJSON, verdictClass, link, table, app, fail};
})();

// The status page's script: it follows this node's event stream
// (GET /v1/events, newline-delimited JSON) from the newest event the page
// was rendered with, adds each event to the page, and reloads the page's
// sections from the node when an event may have changed them, and every
// few seconds for what commits nothing (leadership, membership, Raft
// indexes). It sends only what the browser sends for the page itself;
// its URLs are built on location.origin, which never carries the
// user:password a page's own URL may.
'use strict';

(function () {
  const refreshEvery = 5000; // ms: node and members, which commit nothing
  const retryAfter = 1000; // ms: a stream that ended or failed is opened again
  const keepRows = 200; // event rows kept on the page
  const sections = ['node', 'members', 'services'];

  let after = Number(document.body.dataset.after || '0');
  let pending = null;

  function say(text) {
    const p = document.getElementById('live');
    if (p) p.textContent = text;
  }

  async function refresh() {
    pending = null;
    try {
      const r = await fetch(location.origin + '/', { cache: 'no-store' });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      const doc = new DOMParser().parseFromString(await r.text(), 'text/html');
      for (const id of sections) {
        const fresh = doc.getElementById(id);
        const old = document.getElementById(id);
        if (fresh && old) old.replaceWith(document.importNode(fresh, true));
      }
    } catch (err) {
      say('Could not reload the page from the node (' + err.message + '); trying again.');
    }
  }

  function soon() {
    if (pending === null) pending = setTimeout(refresh, 100);
  }

  function cell(text) {
    const td = document.createElement('td');
    td.textContent = text;
    return td;
  }

  function add(e) {
    const rows = document.getElementById('event-rows');
    if (!rows) return;
    const tr = document.createElement('tr');
    let what = e.detail || '';
    if (e.refused) what += ' [refused: ' + e.refused + ']';
    tr.append(cell(String(e.index)), cell(e.type), cell(e.service || '-'), cell(what));
    rows.prepend(tr);
    while (rows.rows.length > keepRows) rows.deleteRow(rows.rows.length - 1);
  }

  // follow reads one stream until it ends; it returns false when the page
  // must be loaded again (the node no longer holds the events after ours).
  async function follow() {
    const r = await fetch(location.origin + '/v1/events?follow=true&after=' + after, { cache: 'no-store' });
    if (r.status === 410) return false;
    if (!r.ok) throw new Error('HTTP ' + r.status);
    say('Live: following this node\'s events since index ' + after + '.');
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return true;
      buf += value;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line === '') continue;
        const e = JSON.parse(line);
        if (e.type === 'heartbeat') continue;
        if (e.type === 'gone') return false;
        after = e.index;
        add(e);
        soon();
      }
    }
  }

  async function run() {
    for (;;) {
      let again = true;
      try {
        again = await follow();
        say('The event stream ended; opening it again.');
      } catch (err) {
        say('Not live: the event stream failed (' + err.message + '); trying again.');
      }
      if (!again) {
        location.reload();
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, retryAfter));
      soon();
    }
  }

  setInterval(soon, refreshEvery);
  run();
})();

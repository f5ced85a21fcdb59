// The event track's side in the page (docs/events.md). Given to Chromium
// before any script of the page runs, in every document it loads; the
// worker's probe empties the buffer once a second. The worker prepends
// `const RECFLEET_CONFIG = {...};` (watched selectors, limits).
//
// Everything here is bounded: a token bucket limits events per second, the
// buffer holds at most MAX_EVENTS events and MAX_BYTES bytes of data; what
// does not fit is counted, never kept. The page gets `window.recfleet.emit`
// only; the worker reads through `window.__recfleetTrack`.
(function () {
  'use strict';
  if (window.__recfleetTrack) return;
  const C = RECFLEET_CONFIG;
  const stringify = JSON.stringify;
  const clock = performance;
  const now = () => clock.timeOrigin + clock.now();
  const TYPE = /^[A-Za-z0-9._:-]{1,64}$/;
  const buf = [];
  let bytes = 0, dropped = 0, tokens = C.burst, filled = now(), stop = false;

  function push(source, type, data) {
    const t = now();
    tokens = Math.min(C.burst, tokens + ((t - filled) * C.rate) / 1000);
    filled = t;
    if (tokens < 1 || buf.length >= C.maxEvents) { dropped++; return false; }
    let text;
    try { text = data === undefined ? 'null' : stringify(data); } catch (e) { text = undefined; }
    if (typeof text !== 'string') text = stringify(String(data));
    if (text.length > C.dataMax || bytes + text.length > C.maxBytes) { dropped++; return false; }
    tokens -= 1;
    bytes += text.length;
    buf.push([t, source, type, text]);
    return true;
  }

  const api = {
    // Records an event of `type` (1 to 64 of A-Z a-z 0-9 . _ : -) with any
    // JSON-serializable `data` (at most 8 KiB once serialized). Returns
    // false when the event was dropped by the limits.
    emit(type, data) {
      type = String(type);
      if (!TYPE.test(type)) throw new TypeError('recfleet.emit: "' + type.slice(0, 80) + '" is not an event type (1 to 64 of A-Z a-z 0-9 . _ : -)');
      if (type.startsWith('browser.') || (type.startsWith('recfleet.') && type !== 'recfleet.stop')) {
        throw new TypeError('recfleet.emit: the type "' + type + '" is reserved');
      }
      const kept = push('page', type, data);
      if (type === 'recfleet.stop') stop = true;
      return kept;
    },
    version: 1,
  };
  try {
    Object.defineProperty(window, 'recfleet', { value: Object.freeze(api), writable: false, configurable: false });
  } catch (e) { /* the page defined its own first: it cannot emit */ }

  // ---- browser facts ----
  const nav = () => {
    const entry = clock.getEntriesByType('navigation')[0];
    push('browser', 'browser.navigation', { url: String(location.href), kind: entry ? entry.type : 'navigate' });
  };
  nav();
  for (const name of ['pushState', 'replaceState']) {
    const orig = history[name];
    history[name] = function () {
      const r = orig.apply(this, arguments);
      push('browser', 'browser.navigation', { url: String(location.href), kind: name });
      return r;
    };
  }
  addEventListener('popstate', () => push('browser', 'browser.navigation', { url: String(location.href), kind: 'popstate' }));
  addEventListener('hashchange', () => push('browser', 'browser.navigation', { url: String(location.href), kind: 'hashchange' }));
  addEventListener('error', (e) => push('browser', 'browser.console_error', { text: String(e.message).slice(0, 2000), at: e.filename + ':' + e.lineno }));
  addEventListener('unhandledrejection', (e) => push('browser', 'browser.console_error', { text: ('unhandled rejection: ' + String(e.reason)).slice(0, 2000) }));
  const consoleError = console.error;
  console.error = function () {
    push('browser', 'browser.console_error', { text: Array.from(arguments).map(String).join(' ').slice(0, 2000) });
    return consoleError.apply(console, arguments);
  };

  let title = null;
  const checkTitle = () => {
    if (document.title !== title) {
      title = document.title;
      push('browser', 'browser.title', { title: title.slice(0, 500) });
    }
  };

  // Watched elements: their text, each time it changes.
  const watched = C.watch.map((selector) => ({ selector, text: null }));
  const checkWatched = () => {
    for (const w of watched) {
      let el = null;
      try { el = document.querySelector(w.selector); } catch (e) { el = null; }
      const text = el ? String(el.textContent).trim().slice(0, 1000) : null;
      if (text !== null && text !== w.text) {
        w.text = text;
        push('watch', 'watch', { selector: w.selector, text });
      }
    }
  };
  const observe = () => {
    checkTitle();
    checkWatched();
    // One observer for both: title changes and watched text are DOM changes.
    // Only with watched elements is the whole document observed; else the
    // head alone (where the title is), so a busy page costs nothing.
    const target = watched.length ? document.documentElement : (document.head || document.documentElement);
    new MutationObserver(() => { checkTitle(); if (watched.length) checkWatched(); })
      .observe(target, { subtree: true, childList: true, characterData: true });
  };
  if (document.readyState === 'loading') addEventListener('DOMContentLoaded', observe, { once: true });
  else observe();

  // WebRTC peers: opened, their states, closed; and whether any live remote
  // media is coming in (the empty-room stop).
  const peers = new Set();
  const Orig = window.RTCPeerConnection;
  if (typeof Orig === 'function') {
    let next = 1;
    const Wrapped = function (...args) {
      const pc = new Orig(...args);
      const id = next++;
      pc.__recfleetId = id;
      // Watched until closed; a page that opens peers without ever closing
      // them is watched for its first 64 at a time (the set keeps them alive).
      if (peers.size < 64) peers.add(pc);
      push('browser', 'browser.webrtc', { peer: id, state: 'new' });
      pc.addEventListener('connectionstatechange', () => {
        push('browser', 'browser.webrtc', { peer: id, state: pc.connectionState });
        if (pc.connectionState === 'closed') peers.delete(pc);
      });
      pc.addEventListener('track', (e) => push('browser', 'browser.webrtc', { peer: id, state: 'track', kind: e.track.kind }));
      return pc;
    };
    Wrapped.prototype = Orig.prototype;
    Object.setPrototypeOf(Wrapped, Orig);
    const close = Orig.prototype.close;
    Orig.prototype.close = function () {
      if (peers.delete(this)) push('browser', 'browser.webrtc', { peer: this.__recfleetId, state: 'closed' });
      return close.apply(this, arguments);
    };
    window.RTCPeerConnection = Wrapped;
  }
  // Remote media is flowing when an inbound RTP stream received bytes
  // since the last look (once a second): a peer that left stops them at
  // once, while its tracks stay "live" until ICE gives up many seconds later.
  let remoteMedia = 0;
  let received = new Map();
  setInterval(async () => {
    const now = new Map();
    let flowing = 0;
    for (const pc of peers) {
      let stats;
      try { stats = await pc.getStats(); } catch (e) { continue; }
      stats.forEach((s) => {
        if (s.type !== 'inbound-rtp') return;
        const key = pc.__recfleetId + '/' + s.id;
        now.set(key, s.bytesReceived || 0);
        if ((s.bytesReceived || 0) > (received.get(key) || 0)) flowing++;
      });
    }
    received = now;
    remoteMedia = flowing;
  }, 1000);

  window.__recfleetTrack = {
    // What the probe takes: the events since the last drain, what was
    // dropped, live remote media tracks, and whether the page asked to stop.
    drain() {
      checkTitle();
      const events = buf.splice(0);
      const out = { events, dropped, remote_media: remoteMedia, peers: peers.size, stop };
      bytes = 0;
      dropped = 0;
      return out;
    },
  };
})();

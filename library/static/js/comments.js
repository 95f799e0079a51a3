// Live comments for the library pages: a small ES module, no framework, no build step.
//
// Page contract (rendered by the library's templates):
//
//   <section id="comments" data-room="1" data-gateway-url="ws://host:3003/ws"
//            data-username="JD" data-token-url="/api/v1/user/token">
//     <div class="conn-state"></div>                      (optional; created when missing)
//     <ol class="comment-list">
//       <li class="comment [own]" data-id="…" data-seq="3" data-author="JD">
//         <span class="comment-author">John Doe</span>
//         <time class="comment-time" datetime="2024-02-02T09:42:10.250Z">…</time>
//         <p class="comment-text">…</p>
//       </li>
//     </ol>
//     <form class="comment-form"><textarea name="text"></textarea><button type="submit">…</button></form>
//   </section>
//
// The module subscribes to the room over the gateway's WebSocket protocol (docs/protocol.md),
// appends live comments (as text, never as HTML), posts with a clientId that survives retries,
// reconnects with backoff and jitter, and fills gaps with `since`. The protocol logic lives in
// `CommentsClient` (no DOM, unit-tested under node); `DomView` is its page side.

export const MAX_TEXT_CODE_POINTS = 2000;
export const PING_INTERVAL_MS = 25_000;
export const ACK_TIMEOUT_MS = 10_000;
export const BACKOFF_BASE_MS = 500;
export const BACKOFF_MAX_MS = 10_000;

/** Reconnect delay for the n-th consecutive failure (0-based): exponential, capped, "equal jitter". */
export function backoffDelay(attempt, random = Math.random) {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 16));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** The gateway URL with the token as `?token=` (or unchanged when anonymous). */
export function socketUrl(gatewayUrl, token) {
  if (!token) return gatewayUrl;
  const sep = gatewayUrl.includes('?') ? '&' : '?';
  return `${gatewayUrl}${sep}token=${encodeURIComponent(token)}`;
}

/** Parses a data-seq value; returns null when it is not a positive safe integer. */
export function parseSeq(value) {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value > 0 ? value : null;
  if (typeof value !== 'string' || !/^\d{1,15}$/.test(value.trim())) return null;
  const n = Number(value.trim());
  return n > 0 ? n : null;
}

/** Validates a comment text as the gateway does: trimmed, 1..2000 code points. */
export function checkText(text) {
  const trimmed = String(text ?? '').trim();
  if (trimmed.length === 0) return { ok: false, text: trimmed, message: 'Write something first.' };
  const codePoints = [...trimmed].length;
  if (codePoints > MAX_TEXT_CODE_POINTS) {
    return { ok: false, text: trimmed, message: `Too long: ${codePoints} characters, at most ${MAX_TEXT_CODE_POINTS}.` };
  }
  return { ok: true, text: trimmed, message: '' };
}

/** Index at which a comment with `seq` goes into an ascending list of seqs (after equal ones). */
export function insertionIndex(seqs, seq) {
  let lo = 0;
  let hi = seqs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (seqs[mid] <= seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * A display form of an RFC 3339 time, the same as the server-rendered comments
 * ("2024-02-02 09:42 UTC"); the raw value when unparsable.
 */
export function formatTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso ?? '');
  return `${d.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

function defaultUuid() {
  if (globalThis.crypto?.randomUUID) return globalThis.crypto.randomUUID();
  // crypto.randomUUID needs a secure context; plain-http pages on a LAN address lack it.
  const bytes = new Uint8Array(16);
  if (globalThis.crypto?.getRandomValues) globalThis.crypto.getRandomValues(bytes);
  else for (let i = 0; i < 16; i += 1) bytes[i] = Math.floor(Math.random() * 256);
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * The protocol side: connection, subscription, posting, reconnects. Talks to the page through
 * `view` (see DomView for the methods it calls); everything environmental is injectable.
 */
export class CommentsClient {
  constructor(options) {
    const o = options;
    this.room = String(o.room);
    this.gatewayUrl = o.gatewayUrl;
    this.tokenUrl = o.tokenUrl || '';
    this.username = o.username || '';
    this.view = o.view;
    this.WebSocket = o.WebSocket || globalThis.WebSocket;
    this.fetch = o.fetch || ((...args) => globalThis.fetch(...args));
    this.timers = {
      setTimeout: o.setTimeout || ((f, ms) => globalThis.setTimeout(f, ms)),
      clearTimeout: o.clearTimeout || ((id) => globalThis.clearTimeout(id)),
      setInterval: o.setInterval || ((f, ms) => globalThis.setInterval(f, ms)),
      clearInterval: o.clearInterval || ((id) => globalThis.clearInterval(id)),
    };
    this.random = o.random || Math.random;
    this.now = o.now || (() => Date.now());
    this.uuid = o.uuid || defaultUuid;

    this.state = 'connecting';
    this.socket = null;
    this.user = null; // from welcome
    this.canPost = !!this.username; // signed in: posts while offline wait in `pending`
    this.stopped = false;
    this.attempt = 0;
    this.nextRef = 1;
    this.reconnectTimer = null;
    this.pingTimer = null;
    this.lastMessageAt = 0;
    this.subscribeRef = null;
    this.subscribed = false;
    this.seen = new Set(); // comment ids on the page
    this.lastSeq = 0; // highest seq seen in this room
    this.pending = []; // un-acked posts, oldest first: {ref, clientId, text, sentAt, timer}
    this.sinceMode = false; // the current subscribe carries `since`
    this.historyRef = null; // ref of the history request in flight
    this.draft = null; // {clientId, text} of a post refused or failed, reused on a retry of the same text

    for (const c of this.view.initialComments()) {
      if (c.id) this.seen.add(c.id);
      if (c.seq && c.seq > this.lastSeq) this.lastSeq = c.seq;
    }
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    this.clearTimers();
    if (this.socket) {
      const s = this.socket;
      this.socket = null;
      try { s.close(1000); } catch { /* already closed */ }
    }
    this.setState('offline');
  }

  /** Reconnect now (e.g. the browser says it is online again) if not connected. */
  kick() {
    if (this.stopped || this.socket) return;
    if (this.reconnectTimer !== null) {
      this.timers.clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
    }
    this.connect();
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.view.setState(state);
  }

  ref() {
    const r = `c${this.nextRef}`;
    this.nextRef += 1;
    return r;
  }

  send(type, payload, ref) {
    const s = this.socket;
    if (!s || s.readyState !== 1) return false;
    const msg = { type, payload };
    if (ref) msg.ref = ref;
    try {
      s.send(JSON.stringify(msg));
      return true;
    } catch {
      return false;
    }
  }

  async fetchToken() {
    // Signed out according to the page: anonymous, no need to ask.
    if (!this.username || !this.tokenUrl) return { token: null };
    const res = await this.fetch(this.tokenUrl, {
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { Accept: 'application/json' },
    });
    if (res.status === 401 || res.status === 403) return { token: null, signedOut: true };
    if (!res.ok) throw new Error(`token: HTTP ${res.status}`);
    const body = await res.json();
    if (!body || typeof body.token !== 'string' || !body.token) throw new Error('token: no token in answer');
    return { token: body.token };
  }

  async connect() {
    if (this.stopped) return;
    this.reconnectTimer = null;
    this.setState('connecting');
    let token = null;
    try {
      const t = await this.fetchToken();
      token = t.token;
      if (t.signedOut) {
        this.username = '';
        this.setCanPost(false);
        this.view.setSignedOut();
      }
    } catch {
      // Library unreachable (offline?): try again later.
      this.scheduleReconnect();
      return;
    }
    if (this.stopped) return;
    let socket;
    try {
      socket = new this.WebSocket(socketUrl(this.gatewayUrl, token));
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    this.subscribed = false;
    this.lastMessageAt = this.now();
    socket.onmessage = (ev) => {
      if (this.socket === socket) this.onMessage(ev.data);
    };
    socket.onclose = () => {
      if (this.socket === socket) this.onClose();
    };
    socket.onerror = () => { /* a close event follows */ };
  }

  onClose() {
    this.socket = null;
    this.subscribed = false;
    this.subscribeRef = null;
    this.historyRef = null;
    this.clearTimers();
    // Un-acked posts stay queued; their ack timers are moot until we are back.
    for (const p of this.pending) this.clearAckTimer(p);
    if (this.stopped) return;
    this.setState('offline');
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    if (this.stopped || this.reconnectTimer !== null) return;
    this.setState('offline');
    const delay = backoffDelay(this.attempt, this.random);
    this.attempt += 1;
    this.reconnectTimer = this.timers.setTimeout(() => this.connect(), delay);
  }

  clearTimers() {
    if (this.pingTimer !== null) {
      this.timers.clearInterval(this.pingTimer);
      this.pingTimer = null;
    }
    if (this.reconnectTimer !== null) {
      this.timers.clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
    }
  }

  clearAckTimer(p) {
    if (p.timer != null) {
      this.timers.clearTimeout(p.timer);
      p.timer = null;
    }
  }

  /** Drops the current socket (the close handler then reconnects). */
  dropSocket() {
    const s = this.socket;
    if (!s) return;
    try { s.close(4000, 'client timeout'); } catch { /* ignore */ }
    // Some environments never fire close for a dead socket: do it ourselves.
    if (this.socket === s) this.onClose();
  }

  subscribe() {
    this.subscribeRef = this.ref();
    const payload = { room: this.room };
    if (this.lastSeq > 0) payload.since = this.lastSeq;
    this.send('subscribe', payload, this.subscribeRef);
    return payload.since !== undefined;
  }

  onMessage(data) {
    this.lastMessageAt = this.now();
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (!msg || typeof msg !== 'object') return;
    const p = msg.payload || {};
    switch (msg.type) {
      case 'welcome':
        this.user = p.user || null;
        if (this.user && this.user.id) this.username = this.user.id;
        this.sinceMode = this.subscribe();
        if (this.pingTimer === null) {
          this.pingTimer = this.timers.setInterval(() => this.keepalive(), PING_INTERVAL_MS);
        }
        break;
      case 'subscribed':
        if (p.room !== this.room) break;
        for (const c of p.comments || []) this.addComment(c);
        if (p.truncated && this.sinceMode) {
          // More than one page of missed comments: continue from the last one.
          this.subscribe();
          break;
        }
        if (p.truncated && this.view.setMore) this.view.setMore(true); // latest page only: older exist
        this.subscribed = true;
        this.attempt = 0;
        this.setState('live');
        this.setCanPost(!!this.user);
        this.resendPending();
        break;
      case 'comment':
        this.addComment(p);
        break;
      case 'history':
        if (p.room !== this.room) break;
        this.historyRef = null;
        for (const c of p.comments || []) this.addComment(c);
        if (this.view.setMore) this.view.setMore(!!p.more);
        break;
      case 'comment_deleted':
        if (p.room === this.room && p.id) this.view.removeComment(p.id);
        break;
      case 'ack':
        this.onAck(msg.ref, p);
        break;
      case 'notice':
        if (!p.room || p.room === this.room) this.view.showNotice(String(p.text ?? ''));
        break;
      case 'error':
        this.onError(msg.ref, p);
        break;
      case 'pong':
      default:
        break;
    }
  }

  /** Asks for the comments before the oldest one on the page (the "older comments" button). */
  loadOlder() {
    if (!this.subscribed || this.historyRef) return false;
    const before = this.view.lowestSeq ? this.view.lowestSeq() : null;
    if (!before) return false;
    this.historyRef = this.ref();
    return this.send('history', { room: this.room, before, limit: 50 }, this.historyRef);
  }

  keepalive() {
    if (!this.socket) return;
    // Nothing at all (not even a pong) for two intervals: the connection is dead.
    if (this.now() - this.lastMessageAt > 2 * PING_INTERVAL_MS + 5_000) {
      this.dropSocket();
      return;
    }
    this.send('ping', {});
  }

  addComment(c) {
    if (!c || typeof c !== 'object' || c.room !== this.room || !c.id) return false;
    const seq = parseSeq(c.seq);
    if (seq && seq > this.lastSeq) this.lastSeq = seq;
    if (this.seen.has(c.id)) return false;
    this.seen.add(c.id);
    const own = !!this.username && !!c.author && c.author.id === this.username;
    this.view.addComment({ ...c, seq }, own);
    return true;
  }

  /** Whether the form may be used (signed in); while offline, posts are queued until live. */
  setCanPost(can) {
    this.canPost = can;
    this.view.setCanPost(can, this.pending.length > 0);
  }

  /** Submits a comment; returns {ok, message}. The text is kept in the form until the ack. */
  post(rawText) {
    if (!this.username || !this.canPost) return { ok: false, message: 'Sign in to comment.' };
    const check = checkText(rawText);
    if (!check.ok) {
      this.view.showError(check.message);
      return check;
    }
    if (this.pending.length > 0) return { ok: false, message: 'Still sending the previous comment.' };
    // A retry of the same text (after an error or a drop) keeps its clientId: never a duplicate.
    const clientId = this.draft && this.draft.text === check.text ? this.draft.clientId : this.uuid();
    this.draft = { clientId, text: check.text };
    const p = { ref: this.ref(), clientId, text: check.text, timer: null };
    this.pending.push(p);
    this.view.clearError();
    this.view.setSending(true);
    if (this.subscribed) this.sendPost(p);
    return { ok: true, message: '' };
  }

  sendPost(p) {
    if (!this.send('post', { room: this.room, text: p.text, clientId: p.clientId }, p.ref)) return;
    this.clearAckTimer(p);
    // No answer in time: assume the connection is dead; the reconnect resends it.
    p.timer = this.timers.setTimeout(() => {
      p.timer = null;
      if (this.pending.includes(p)) this.dropSocket();
    }, ACK_TIMEOUT_MS);
  }

  resendPending() {
    for (const p of this.pending) this.sendPost(p);
  }

  onAck(ref, payload) {
    const i = this.pending.findIndex((p) => p.ref === ref);
    if (i < 0) return;
    const [p] = this.pending.splice(i, 1);
    this.clearAckTimer(p);
    if (payload && payload.comment) this.addComment(payload.comment);
    if (this.draft && this.draft.clientId === p.clientId) this.draft = null;
    if (this.pending.length === 0) {
      this.view.setSending(false);
      this.view.postDone(p.text);
    }
  }

  onError(ref, payload) {
    const message = String(payload.message || payload.code || 'error');
    const code = payload.code;
    if (ref && ref === this.historyRef) {
      this.historyRef = null;
      this.view.showError(`Cannot load older comments: ${message}`);
      return;
    }
    if (ref && ref === this.subscribeRef) {
      this.view.showError(`Cannot load live comments: ${message}`);
      return;
    }
    const i = ref ? this.pending.findIndex((p) => p.ref === ref) : -1;
    if (i >= 0) {
      const [p] = this.pending.splice(i, 1);
      this.clearAckTimer(p);
      if (code === 'not_subscribed') {
        // Our subscription got lost: queue it again and resubscribe; it goes out once subscribed.
        this.pending.splice(i, 0, p);
        this.subscribed = false;
        this.sinceMode = this.subscribe();
        return;
      }
      // Refused (or failed): the text stays in the form; the same text retries with the same clientId.
      if (this.pending.length === 0) this.view.setSending(false);
      if (code === 'unauthorized') this.view.showError('Sign in to comment.');
      else this.view.showError(message);
      return;
    }
    this.view.showError(message);
  }
}

/** The page side of CommentsClient, working on the #comments element. */
export class DomView {
  constructor(root, doc = root.ownerDocument) {
    this.root = root;
    this.doc = doc;
    this.list = root.querySelector('.comment-list');
    if (!this.list) {
      this.list = doc.createElement('ol');
      this.list.className = 'comment-list';
      root.append(this.list);
    }
    this.state = root.querySelector('.conn-state');
    if (!this.state) {
      this.state = doc.createElement('div');
      this.state.className = 'conn-state';
      this.state.setAttribute('role', 'status');
      const heading = root.querySelector('h1, h2, h3');
      if (heading && heading.parentElement === root) heading.after(this.state);
      else root.prepend(this.state);
    }
    this.form = root.querySelector('form.comment-form');
    this.textarea = this.form ? this.form.querySelector('textarea[name="text"], textarea') : null;
    this.button = this.form ? this.form.querySelector('button[type="submit"], button:not([type]), input[type="submit"]') : null;
    this.username = root.dataset.username || '';
    // The template renders the form hidden (it needs JS); show it to signed-in users.
    if (this.form && this.username) this.form.hidden = false;
    this.setState('connecting');
  }

  /** Creates the comment form when the template did not render one (signed-in users only). */
  ensureForm() {
    if (this.form || !this.username) return;
    const form = this.doc.createElement('form');
    form.className = 'comment-form';
    const textarea = this.doc.createElement('textarea');
    textarea.name = 'text';
    textarea.rows = 3;
    textarea.maxLength = MAX_TEXT_CODE_POINTS * 2;
    textarea.required = true;
    textarea.placeholder = 'Your comment';
    const button = this.doc.createElement('button');
    button.type = 'submit';
    button.textContent = 'Send';
    form.append(textarea, button);
    this.list.after(form);
    this.form = form;
    this.textarea = textarea;
    this.button = button;
  }

  items() {
    return [...this.list.querySelectorAll(':scope > .comment')];
  }

  lowestSeq() {
    let low = null;
    for (const el of this.items()) {
      const seq = parseSeq(el.dataset.seq);
      if (seq && (low === null || seq < low)) low = seq;
    }
    return low;
  }

  /** Shows or hides the "older comments" button (the template says data-more="true"). */
  setMore(more) {
    this.root.dataset.more = more ? 'true' : 'false';
    if (!this.olderButton) {
      if (!more) return;
      const button = this.doc.createElement('button');
      button.type = 'button';
      button.className = 'comment-older secondary';
      button.textContent = 'Show older comments';
      button.addEventListener('click', () => { if (this.onOlder) this.onOlder(); });
      this.list.before(button);
      this.olderButton = button;
    }
    this.olderButton.hidden = !more;
  }

  initialComments() {
    const out = [];
    // The template may also say the highest seq it rendered (data-last-seq).
    const lastSeq = parseSeq(this.root.dataset.lastSeq);
    if (lastSeq) out.push({ id: '', seq: lastSeq });
    for (const el of this.items()) {
      const seq = parseSeq(el.dataset.seq);
      out.push({ id: el.dataset.id || '', seq });
      if (this.username && el.dataset.author === this.username) el.classList.add('own');
    }
    return out;
  }

  setState(state) {
    const labels = { connecting: 'connecting…', live: 'live', offline: 'offline, reconnecting…' };
    this.state.dataset.state = state;
    this.state.classList.remove('connecting', 'live', 'offline');
    this.state.classList.add(state);
    this.state.textContent = labels[state] || state;
    this.root.dataset.state = state;
    if (state === 'live' && this.root.dataset.available === 'false') {
      // The page rendered without the gateway; the live connection has the comments now.
      const status = this.root.querySelector('.comments-status');
      if (status) status.textContent = '';
      this.root.dataset.available = 'true';
    }
  }

  addComment(c, own) {
    const itemTag = this.list.tagName === 'UL' || this.list.tagName === 'OL' ? 'li' : 'div';
    const el = this.doc.createElement(itemTag);
    el.className = own ? 'comment own' : 'comment';
    el.dataset.id = c.id;
    if (c.seq) el.dataset.seq = String(c.seq);
    el.dataset.author = c.author?.id ?? '';
    const meta = this.doc.createElement('div');
    meta.className = 'comment-meta';
    const authorId = c.author?.id ?? '';
    const author = this.doc.createElement(authorId ? 'a' : 'span');
    author.className = 'comment-author';
    if (authorId) author.href = `/view/user/profile/${encodeURIComponent(authorId)}`;
    author.textContent = c.author?.name || c.author?.id || '';
    const time = this.doc.createElement('time');
    time.className = 'comment-time';
    time.dateTime = String(c.createdAt ?? '');
    time.textContent = formatTime(c.createdAt);
    meta.append(author, ' ', time);
    const text = this.doc.createElement('p');
    text.className = 'comment-text';
    text.textContent = String(c.text ?? '');
    el.append(meta, text);

    // Keep the list in seq order (a live comment normally goes last).
    const items = this.items();
    const seqs = items.map((x) => parseSeq(x.dataset.seq) ?? 0);
    const at = c.seq ? insertionIndex(seqs, c.seq) : items.length;
    if (at < items.length) items[at].before(el);
    else this.list.append(el);
    for (const empty of this.root.querySelectorAll('.comment-empty, .comments-empty')) empty.hidden = true;
    const nearBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 80;
    if (nearBottom) this.list.scrollTop = this.list.scrollHeight;
  }

  removeComment(id) {
    for (const el of this.items()) if (el.dataset.id === id) el.remove();
  }

  notice() {
    let el = this.root.querySelector('.comment-notice');
    if (!el) {
      el = this.doc.createElement('div');
      el.className = 'comment-notice';
      el.setAttribute('role', 'alert');
      this.state.after(el);
    }
    return el;
  }

  showNotice(text) {
    const el = this.notice();
    el.textContent = text;
    el.hidden = false;
  }

  errorBox() {
    let el = this.root.querySelector('.comment-error');
    if (!el) {
      el = this.doc.createElement('div');
      el.className = 'comment-error';
      el.setAttribute('role', 'alert');
      if (this.form) this.form.after(el);
      else this.list.after(el);
    }
    return el;
  }

  showError(message) {
    const el = this.errorBox();
    el.textContent = message;
    el.hidden = false;
  }

  clearError() {
    const el = this.root.querySelector('.comment-error');
    if (el) {
      el.textContent = '';
      el.hidden = true;
    }
  }

  setSignedOut() {
    this.username = '';
    if (this.form) this.form.hidden = true;
    if (!this.root.querySelector('.comment-signin, .comments-hint')) {
      const p = this.doc.createElement('p');
      p.className = 'comment-signin';
      const a = this.doc.createElement('a');
      a.href = '/view/user/login';
      a.textContent = 'Sign in to comment';
      p.append(a);
      (this.form || this.list).after(p);
    }
  }

  setCanPost(can, sending) {
    if (!this.form) return;
    if (this.button) this.button.disabled = !can || sending;
    this.form.dataset.ready = can ? 'true' : 'false';
  }

  setSending(sending) {
    if (!this.form) return;
    this.form.dataset.sending = sending ? 'true' : 'false';
    if (this.textarea) this.textarea.readOnly = sending;
    if (this.button) this.button.disabled = sending || this.form.dataset.ready !== 'true';
    this.form.setAttribute('aria-busy', sending ? 'true' : 'false');
  }

  postDone(text) {
    if (this.textarea && this.textarea.value.trim() === text) this.textarea.value = '';
    if (this.textarea) this.textarea.focus();
  }
}

const FALLBACK_STYLE = `
:where(#comments .comment.own) { text-align: right; margin-left: auto; }
:where(#comments .conn-state) { font-size: .85em; opacity: .8; }
:where(#comments .comment-error) { color: #b00020; }
`;

/** Wires the module to the page's #comments element; returns the client (or null). */
export function init(doc = globalThis.document, win = globalThis.window) {
  const root = doc?.getElementById('comments');
  if (!root || !root.dataset.room) return null;
  if (!doc.getElementById('comments-fallback-style')) {
    // Zero-specificity defaults (the site CSS overrides them): own comments right-aligned.
    const style = doc.createElement('style');
    style.id = 'comments-fallback-style';
    style.textContent = FALLBACK_STYLE;
    doc.head.append(style);
  }
  const view = new DomView(root, doc);
  const username = root.dataset.username || '';
  if (username) view.ensureForm();
  else view.setSignedOut();
  const loc = win.location;
  const gatewayUrl = root.dataset.gatewayUrl
    || `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.hostname}:3003/ws`;
  const client = new CommentsClient({
    room: root.dataset.room,
    gatewayUrl,
    tokenUrl: root.dataset.tokenUrl || '/api/v1/user/token',
    username,
    view,
  });
  view.setCanPost(!!username, false);
  view.onOlder = () => client.loadOlder();
  if (root.dataset.more === 'true') view.setMore(true);
  if (view.form) {
    view.form.addEventListener('submit', (event) => {
      event.preventDefault();
      client.post(view.textarea ? view.textarea.value : '');
    });
    if (view.textarea) {
      view.textarea.addEventListener('keydown', (event) => {
        if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
          event.preventDefault();
          view.form.requestSubmit();
        }
      });
    }
  }
  win.addEventListener('online', () => client.kick());
  win.addEventListener('pagehide', () => client.stop());
  win.addEventListener('pageshow', (event) => {
    if (event.persisted) client.start();
  });
  // Test hook: live view of the state and the current socket.
  win.__comments = {
    get state() { return client.state; },
    get socket() { return client.socket; },
    get lastSeq() { return client.lastSeq; },
    client,
  };
  client.start();
  return client;
}

if (typeof document !== 'undefined' && typeof window !== 'undefined') {
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', () => init());
  else init();
}

// @ts-check
// Live comments and discussions for the library pages: a small ES module, no framework, no
// build step. Type-checked (`tsc --noEmit --checkJs`, see e2e/package.json) against
// `protocol.d.ts`, which is generated from the Rust wire types in shared-proto.
//
// Page contract (rendered by the library's templates, library/templates/_comments.html):
//
//   <section id="comments" data-room="1" data-gateway-url="ws://host:3003/ws"
//            data-username="JD" data-token-url="/api/v1/user/token" data-last-seq="3">
//     <p class="comments-presence">2 reading now: John Doe and 1 guest</p>   (optional)
//     <ol class="comment-list">
//       <li class="comment [own] [reply]" id="comment-ID" data-id="ID" data-seq="3" data-author="JD"
//           data-reply-to="PARENT" data-edited-at="…" data-reactions='{"👍":2}'>
//         <span class="comment-author">John Doe</span>
//         <time class="comment-time" datetime="2024-02-02T09:42:10.250Z">…</time>
//         <p class="comment-text">…</p>
//       </li>
//     </ol>
//     <form class="comment-form"><textarea name="text"></textarea><button type="submit">…</button></form>
//   </section>
//
// The module subscribes to the room over the gateway's WebSocket protocol (docs/protocol.md), renders comments as
// text (never as HTML), posts with a clientId that survives retries, replies, edits, deletes,
// reacts, shows who is reading and typing, reconnects with backoff and jitter, fills gaps with
// `since` and refreshes the state of the shown comments with `limit`. The protocol logic lives in
// `CommentsClient` (no DOM, unit-tested under node); `DomView` is its page side.

/** @typedef {import('./protocol').Comment} Comment */
/** @typedef {import('./protocol').Emoji} Emoji */
/** @typedef {import('./protocol').ServerFrame} ServerFrame */
/** @typedef {import('./protocol').ClientFrame} ClientFrame */
/** @typedef {import('./protocol').UserInfo} UserInfo */
/** @typedef {import('./protocol').Presence} Presence */
/** @typedef {import('./protocol').UserRef} PresenceUser */
/** @typedef {import('./protocol').ErrorPayload} ErrorPayload */
/** @typedef {Partial<Record<Emoji, number>>} Reactions */

export const MAX_TEXT_CODE_POINTS = 2000;
export const PING_INTERVAL_MS = 25_000;
export const ACK_TIMEOUT_MS = 10_000;
export const BACKOFF_BASE_MS = 500;
export const BACKOFF_MAX_MS = 10_000;
/** Retry of a `subscribe` answered with an error (the socket stays open): first wait, doubling to the cap. */
export const SUBSCRIBE_RETRY_BASE_MS = 1000;
export const SUBSCRIBE_RETRY_MAX_MS = 30_000;
/** Subscribe errors that a retry cannot fix: the client gives up (until the next connection). */
export const SUBSCRIBE_FINAL_CODES = new Set(['bad_request', 'unauthorized', 'forbidden']);
/** At most one `typing` sent per this interval (the gateway relays one per 2 s anyway). */
export const TYPING_SEND_INTERVAL_MS = 2000;
/** How long "X is typing…" stays after the last `typing` from X. */
export const TYPING_SHOW_MS = 5000;
/** The gateway's default `EDIT_WINDOW_SECS` (900); a page may say otherwise with data-edit-window-secs. */
export const EDIT_WINDOW_MS = 900_000;
/** Code points of a parent's text quoted above a reply. */
export const QUOTE_CODE_POINTS = 100;
/** Bound of the parent cache (parents fetched over HTTP because they are not on the page). */
export const PARENT_CACHE_MAX = 200;
/** Bound of the "typing" list a room can grow in this page. */
export const TYPERS_MAX = 20;
/** The six reactions, in display order, with their accessible names. */
/** @type {ReadonlyArray<readonly [Emoji, string]>} */
export const EMOJI = [
  ['👍', 'thumbs up'],
  ['❤️', 'heart'],
  ['😂', 'laughing'],
  ['😮', 'surprised'],
  ['😢', 'sad'],
  ['🎉', 'celebrate'],
];
const EMOJI_SET = new Set(EMOJI.map(([e]) => e));
const EMOJI_NAMES = new Map(EMOJI);

/**
 * Reconnect delay for the n-th consecutive failure (0-based): exponential, capped, "equal jitter"
 * (between half the ceiling and the ceiling). `base`/`max` default to the reconnect's.
 * @param {number} attempt
 * @param {() => number} [random]
 * @param {number} [base]
 * @param {number} [max]
 */
export function backoffDelay(attempt, random = Math.random, base = BACKOFF_BASE_MS, max = BACKOFF_MAX_MS) {
  const ceiling = Math.min(max, base * 2 ** Math.min(attempt, 16));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/**
 * The gateway URL with the token as `?token=` (or unchanged when anonymous).
 * @param {string} gatewayUrl
 * @param {string | null | undefined} token
 */
export function socketUrl(gatewayUrl, token) {
  if (!token) return gatewayUrl;
  const sep = gatewayUrl.includes('?') ? '&' : '?';
  return `${gatewayUrl}${sep}token=${encodeURIComponent(token)}`;
}

/**
 * The gateway's HTTP base from its public WebSocket URL (`GATEWAY_PUBLIC_URL`):
 * `ws://h:3003/ws` → `http://h:3003`, `wss://h/chat/ws` → `https://h/chat`. Null when unusable.
 * @param {string} wsUrl
 */
export function httpBaseFromWs(wsUrl) {
  let u;
  try {
    u = new URL(wsUrl);
  } catch {
    return null;
  }
  const scheme = { 'ws:': 'http:', 'wss:': 'https:', 'http:': 'http:', 'https:': 'https:' }[u.protocol];
  if (!scheme) return null;
  const path = u.pathname.replace(/\/ws\/?$/, '').replace(/\/+$/, '');
  return `${scheme}//${u.host}${path}`;
}

/**
 * Parses a data-seq value; returns null when it is not a positive safe integer.
 * @param {unknown} value
 */
export function parseSeq(value) {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value > 0 ? value : null;
  if (typeof value !== 'string' || !/^\d{1,15}$/.test(value.trim())) return null;
  const n = Number(value.trim());
  return n > 0 ? n : null;
}

/**
 * Validates a comment text as the gateway does: trimmed, 1..2000 code points.
 * @param {unknown} text
 */
export function checkText(text) {
  const trimmed = String(text ?? '').trim();
  if (trimmed.length === 0) return { ok: false, text: trimmed, message: 'Write something first.' };
  const codePoints = [...trimmed].length;
  if (codePoints > MAX_TEXT_CODE_POINTS) {
    return { ok: false, text: trimmed, message: `Too long: ${codePoints} characters, at most ${MAX_TEXT_CODE_POINTS}.` };
  }
  return { ok: true, text: trimmed, message: '' };
}

/**
 * Index at which a comment with `seq` goes into an ascending list of seqs (after equal ones).
 * @param {number[]} seqs
 * @param {number} seq
 */
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
 * The server-rendered form of an RFC 3339 time ("2024-02-02 09:42 UTC"); the raw value when
 * unparsable. Used where the reader's time zone is unknown.
 * @param {unknown} iso
 */
export function formatTime(iso) {
  const d = new Date(String(iso));
  if (Number.isNaN(d.getTime())) return String(iso ?? '');
  return `${d.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/**
 * The exact time in the reader's time zone (for the `title` of a time), e.g.
 * "Friday 2 February 2024 at 10:42:10 CET". `timeZone`/`locale` are for tests.
 * @param {unknown} iso
 * @param {{timeZone?: string, locale?: string}} [opts]
 */
export function formatExact(iso, opts = {}) {
  const d = new Date(String(iso));
  if (Number.isNaN(d.getTime())) return String(iso ?? '');
  try {
    return new Intl.DateTimeFormat(opts.locale, {
      dateStyle: 'full', timeStyle: 'long', timeZone: opts.timeZone,
    }).format(d);
  } catch {
    return formatTime(iso);
  }
}

/**
 * A reader-friendly time: relative for the last day ("just now", "5 min ago", "3 h ago"), else
 * the date and time in the reader's time zone ("2 Feb 2024, 10:42").
 * @param {unknown} iso
 * @param {number} nowMs
 * @param {{timeZone?: string, locale?: string}} [opts]
 */
export function formatRelative(iso, nowMs, opts = {}) {
  const d = new Date(String(iso));
  const t = d.getTime();
  if (Number.isNaN(t)) return String(iso ?? '');
  const ago = nowMs - t;
  if (ago < 60_000 && ago > -60_000) return 'just now';
  if (ago >= 60_000 && ago < 3_600_000) return `${Math.floor(ago / 60_000)} min ago`;
  if (ago >= 3_600_000 && ago < 86_400_000) return `${Math.floor(ago / 3_600_000)} h ago`;
  try {
    return new Intl.DateTimeFormat(opts.locale, {
      dateStyle: 'medium', timeStyle: 'short', timeZone: opts.timeZone,
    }).format(d);
  } catch {
    return formatTime(iso);
  }
}

/**
 * Joins names as English prose: "A", "A and B", "A, B and C".
 * @param {string[]} parts
 */
export function joinNames(parts) {
  if (parts.length <= 1) return parts.join('');
  return `${parts.slice(0, -1).join(', ')} and ${parts[parts.length - 1]}`;
}

/**
 * "3 reading now: John Doe, Administrator and 1 guest" from a `presence` payload; names beyond
 * `maxNames` become "N others". Empty when nobody reads (or the payload is not usable).
 * @param {{readers?: unknown, users?: unknown}} presence
 * @param {number} [maxNames]
 */
export function formatPresence(presence, maxNames = 5) {
  const readers = Number(presence?.readers);
  if (!Number.isSafeInteger(readers) || readers <= 0) return '';
  const users = Array.isArray(presence.users) ? presence.users : [];
  const names = users.map((u) => String(u?.name || u?.id || '')).filter(Boolean);
  const shown = names.slice(0, maxNames);
  const parts = [...shown];
  const hiddenUsers = names.length - shown.length;
  // `users` holds at most 50: past that the rest may be signed in or not.
  const rest = Math.max(0, readers - names.length);
  if (users.length >= 50) {
    if (hiddenUsers + rest > 0) parts.push(`${hiddenUsers + rest} others`);
  } else {
    if (hiddenUsers > 0) parts.push(`${hiddenUsers} other${hiddenUsers === 1 ? '' : 's'}`);
    if (rest > 0) parts.push(`${rest} guest${rest === 1 ? '' : 's'}`);
  }
  return `${readers} reading now: ${joinNames(parts)}`;
}

/**
 * "John Doe is typing…", "A and B are typing…", "A, B and 2 others are typing…"; empty for nobody.
 * @param {string[]} names
 */
export function formatTyping(names) {
  if (names.length === 0) return '';
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length <= 3) return `${joinNames(names)} are typing…`;
  return `${names.slice(0, 2).join(', ')} and ${names.length - 2} others are typing…`;
}

/**
 * A short one-line quote of a comment text: whitespace collapsed, at most `max` code points.
 * @param {unknown} text
 * @param {number} [max]
 */
export function quoteText(text, max = QUOTE_CODE_POINTS) {
  const flat = String(text ?? '').replace(/\s+/g, ' ').trim();
  const cps = [...flat];
  return cps.length <= max ? flat : `${cps.slice(0, max - 1).join('').trimEnd()}…`;
}

/**
 * Whether `user` may still edit `comment` at `nowMs` (author only, within the window).
 * @param {{author?: {id?: string}, createdAt?: string} | null | undefined} comment
 * @param {string} userId
 * @param {number} nowMs
 * @param {number} [windowMs]
 */
export function canEdit(comment, userId, nowMs, windowMs = EDIT_WINDOW_MS) {
  if (!comment || !userId || comment.author?.id !== userId) return false;
  const created = Date.parse(String(comment.createdAt));
  return Number.isFinite(created) && nowMs < created + windowMs;
}

/**
 * Only the six known emoji with positive integer counts.
 * @param {unknown} value
 * @returns {Reactions}
 */
export function cleanReactions(value) {
  /** @type {Reactions} */
  const out = {};
  if (!value || typeof value !== 'object') return out;
  for (const [emoji, count] of Object.entries(value)) {
    if (EMOJI_SET.has(/** @type {Emoji} */ (emoji)) && Number.isSafeInteger(count) && count > 0) {
      out[/** @type {Emoji} */ (emoji)] = count;
    }
  }
  return out;
}

/**
 * A comment from the wire or the page with the v3 fields filled in (`replyTo`, `editedAt`,
 * `reactions`); null when it is not a comment of `room`.
 * @param {any} c
 * @param {string} room
 * @returns {Comment | null}
 */
export function normalizeComment(c, room) {
  if (!c || typeof c !== 'object' || c.room !== room || typeof c.id !== 'string' || !c.id) return null;
  return {
    id: c.id,
    seq: parseSeq(c.seq) ?? 0,
    room: c.room,
    author: { id: String(c.author?.id ?? ''), name: String(c.author?.name ?? c.author?.id ?? '') },
    text: String(c.text ?? ''),
    createdAt: String(c.createdAt ?? ''),
    replyTo: typeof c.replyTo === 'string' && c.replyTo ? c.replyTo : null,
    editedAt: typeof c.editedAt === 'string' && c.editedAt ? c.editedAt : null,
    reactions: cleanReactions(c.reactions),
  };
}

/**
 * Which shown comments a `subscribe` with `limit` proves deleted: every shown one missing from
 * the answer when the answer holds the whole room (`truncated: false`), else those missing at or
 * above the answer's lowest `seq`.
 * @param {Array<{id: string, seq: number}>} shown
 * @param {Array<{id: string, seq: number}>} answer
 * @param {boolean} truncated
 */
export function staleIds(shown, answer, truncated) {
  const ids = new Set(answer.map((c) => c.id));
  const low = answer.reduce((m, c) => Math.min(m, c.seq), Infinity);
  return shown.filter((c) => !ids.has(c.id) && (!truncated || (c.seq > 0 && c.seq >= low))).map((c) => c.id);
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
 * What CommentsClient needs from the page (DomView implements it; the unit tests fake it).
 * @typedef {object} View
 * @property {() => Comment[]} initialComments comments rendered by the server, oldest first
 * @property {() => number} initialLastSeq the highest seq the server rendered (data-last-seq)
 * @property {(state: string) => void} setState
 * @property {(c: Comment, own: boolean, mine: Set<Emoji>, fresh: boolean) => void} addComment
 * @property {(c: Comment, mine: Set<Emoji>) => void} updateComment
 * @property {(id: string) => void} removeComment
 * @property {(user: UserInfo | null) => void} setUser
 * @property {(text: string) => void} setPresence
 * @property {(text: string) => void} setTyping
 * @property {(text: string) => void} showNotice
 * @property {(text: string) => void} showError
 * @property {() => void} clearError
 * @property {() => void} setSignedOut
 * @property {(can: boolean, sending: boolean) => void} setCanPost
 * @property {(sending: boolean) => void} setSending
 * @property {(text: string) => void} postDone
 * @property {(id: string, ok: boolean, message: string) => void} editDone
 * @property {(id: string, message: string) => void} deleteFailed
 * @property {(more: boolean) => void} [setMore]
 * @property {() => number | null} [lowestSeq]
 */

/**
 * @typedef {{ref: string, clientId: string, text: string, replyTo: string | null, timer: any}} PendingPost
 * @typedef {{kind: 'edit' | 'delete' | 'react', id: string, emoji?: Emoji, on?: boolean}} PendingRequest
 */

/**
 * The protocol side: connection, subscription, posting, discussions, reconnects. Talks to the
 * page through `view` (see View); everything environmental is injectable.
 */
export class CommentsClient {
  /**
   * @param {{room: string, gatewayUrl: string, tokenUrl?: string, username?: string, view: View,
   *   WebSocket?: any, fetch?: (url: string, init?: any) => Promise<any>,
   *   setTimeout?: (f: () => void, ms: number) => any, clearTimeout?: (id: any) => void,
   *   setInterval?: (f: () => void, ms: number) => any, clearInterval?: (id: any) => void,
   *   random?: () => number, now?: () => number, uuid?: () => string,
   *   editWindowMs?: number, httpBase?: string | null}} options
   */
  constructor(options) {
    const o = options;
    this.room = String(o.room);
    this.gatewayUrl = o.gatewayUrl;
    this.httpBase = o.httpBase === undefined ? httpBaseFromWs(o.gatewayUrl) : o.httpBase;
    this.tokenUrl = o.tokenUrl || '';
    this.username = o.username || '';
    this.view = o.view;
    this.WebSocket = o.WebSocket || globalThis.WebSocket;
    this.fetch = o.fetch || ((url, init) => globalThis.fetch(url, init));
    this.timers = {
      setTimeout: o.setTimeout || ((f, ms) => globalThis.setTimeout(f, ms)),
      clearTimeout: o.clearTimeout || ((id) => globalThis.clearTimeout(id)),
      setInterval: o.setInterval || ((f, ms) => globalThis.setInterval(f, ms)),
      clearInterval: o.clearInterval || ((id) => globalThis.clearInterval(id)),
    };
    this.random = o.random || Math.random;
    this.now = o.now || (() => Date.now());
    this.uuid = o.uuid || defaultUuid;
    this.editWindowMs = o.editWindowMs ?? EDIT_WINDOW_MS;

    this.state = 'connecting';
    /** @type {any} */
    this.socket = null;
    /** @type {UserInfo | null} */
    this.user = null; // from welcome
    this.canPost = !!this.username; // signed in: posts while offline wait in `pending`
    this.stopped = false;
    this.attempt = 0;
    this.nextRef = 1;
    /** @type {any} */
    this.reconnectTimer = null;
    /** @type {any} */
    this.pingTimer = null;
    this.lastMessageAt = 0;
    /** @type {Map<string, 'since' | 'refresh' | 'latest'>} refs of subscribes in flight */
    this.subscribes = new Map();
    /** @type {any} a subscribe to send again on this socket after an error (see onError) */
    this.subscribeRetryTimer = null;
    /** @type {'since' | 'refresh' | 'latest' | null} the phase that retry sends */
    this.subscribeRetryPhase = null;
    this.subscribeRetryAttempt = 0; // consecutive subscribe errors; 0 again once one is answered
    this.subscribeErrorShown = false; // "Cannot load live comments" is on the page
    this.subscribed = false;
    /** @type {Set<string>} every comment id this page has had (a deleted one never comes back) */
    this.seen = new Set();
    /** @type {Map<string, Comment>} the comments on the page */
    this.comments = new Map();
    /** @type {Map<string, Set<Emoji>>} the signed-in user's own reactions, by comment id */
    this.mine = new Map();
    this.lastSeq = 0; // highest seq seen in this room
    /** @type {PendingPost[]} un-acked posts, oldest first */
    this.pending = [];
    /** @type {Map<string, PendingRequest>} edit/delete/react requests by ref */
    this.requests = new Map();
    /** @type {string | null} ref of the history request in flight */
    this.historyRef = null;
    /** @type {{clientId: string, text: string, replyTo: string | null} | null} a post refused or failed, reused on a retry */
    this.draft = null;
    /** @type {Map<string, Comment | null>} parents not on the page (null: deleted or unknown) */
    this.parents = new Map();
    /** @type {Map<string, Promise<Comment | null>>} */
    this.parentFetches = new Map();
    /** @type {Map<string, {name: string, timer: any}>} who is typing, by user id */
    this.typers = new Map();
    this.lastTypingSentAt = -Infinity;

    this.lastSeq = Math.max(0, this.view.initialLastSeq());
    for (const raw of this.view.initialComments()) {
      const c = normalizeComment(raw, this.room);
      if (!c) continue;
      this.seen.add(c.id);
      this.comments.set(c.id, c);
      if (c.seq > this.lastSeq) this.lastSeq = c.seq;
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

  /** @param {string} state */
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

  /**
   * Sends one frame; false when there is no open socket.
   * @param {ClientFrame} frame
   */
  sendFrame(frame) {
    const s = this.socket;
    if (!s || s.readyState !== 1) return false;
    try {
      s.send(JSON.stringify(frame));
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
    socket.onmessage = (/** @type {{data: any}} */ ev) => {
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
    this.subscribes.clear();
    this.historyRef = null;
    this.clearTimers();
    // Un-acked posts stay queued; their ack timers are moot until we are back.
    for (const p of this.pending) this.clearAckTimer(p);
    // Edits, deletes and reactions in flight are not resent: their answer is lost, say so.
    for (const [, r] of this.requests) this.failRequest(r, 'Connection lost; try again.');
    this.requests.clear();
    this.clearTypers();
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
    this.cancelSubscribeRetry();
  }

  /** Forgets a scheduled subscribe retry (the socket closed, or a subscribe got through). */
  cancelSubscribeRetry() {
    if (this.subscribeRetryTimer !== null) {
      this.timers.clearTimeout(this.subscribeRetryTimer);
      this.subscribeRetryTimer = null;
    }
    this.subscribeRetryPhase = null;
  }

  /**
   * Subscribes again after a backoff with jitter, on the current socket only: when it closes first,
   * clearTimers cancels this and the reconnect subscribes anyway. A retry already waiting is kept
   * (a 'since' or 'latest' one also covers a 'refresh': its answer sends the refresh). Returns the
   * delay in ms, or null when nothing was scheduled.
   * @param {'since' | 'refresh' | 'latest'} phase
   */
  scheduleSubscribeRetry(phase) {
    const socket = this.socket;
    if (this.stopped || !socket) return null;
    if (this.subscribeRetryTimer !== null) {
      if (phase !== 'refresh') this.subscribeRetryPhase = phase;
      return null;
    }
    const delay = backoffDelay(this.subscribeRetryAttempt, this.random, SUBSCRIBE_RETRY_BASE_MS, SUBSCRIBE_RETRY_MAX_MS);
    this.subscribeRetryAttempt += 1;
    this.subscribeRetryPhase = phase;
    this.subscribeRetryTimer = this.timers.setTimeout(() => {
      const again = this.subscribeRetryPhase;
      this.subscribeRetryTimer = null;
      this.subscribeRetryPhase = null;
      if (this.stopped || this.socket !== socket || socket.readyState !== 1 || !again) return;
      // 'since' vs 'latest' as at welcome: comments may have arrived meanwhile (another subscribe).
      this.subscribe(again === 'refresh' ? 'refresh' : (this.lastSeq > 0 ? 'since' : 'latest'));
    }, delay);
    return delay;
  }

  /** @param {PendingPost} p */
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

  /**
   * Sends a `subscribe`: `since` the highest seq known (new comments), `refresh` with `limit`
   * covering the shown comments (their current state), or the latest page.
   * @param {'since' | 'refresh' | 'latest'} phase
   */
  subscribe(phase) {
    const ref = this.ref();
    /** @type {{room: string, since?: number, limit?: number}} */
    const payload = { room: this.room };
    if (phase === 'since') payload.since = this.lastSeq;
    if (phase === 'refresh') payload.limit = Math.min(200, Math.max(1, this.comments.size));
    this.subscribes.set(ref, phase);
    this.sendFrame({ type: 'subscribe', ref, payload });
  }

  /** @param {unknown} data */
  onMessage(data) {
    this.lastMessageAt = this.now();
    /** @type {ServerFrame} */
    let msg;
    try {
      msg = JSON.parse(String(data));
    } catch {
      return;
    }
    if (!msg || typeof msg !== 'object' || !msg.payload || typeof msg.payload !== 'object') return;
    const ref = typeof msg.ref === 'string' ? msg.ref : null;
    switch (msg.type) {
      case 'welcome': {
        this.user = msg.payload.user || null;
        if (this.user && this.user.id) this.username = this.user.id;
        this.view.setUser(this.user);
        this.subscribe(this.lastSeq > 0 ? 'since' : 'latest');
        if (this.pingTimer === null) {
          this.pingTimer = this.timers.setInterval(() => this.keepalive(), PING_INTERVAL_MS);
        }
        break;
      }
      case 'subscribed': {
        const p = msg.payload;
        if (p.room !== this.room) break;
        const phase = (ref && this.subscribes.get(ref)) || 'latest';
        if (ref) this.subscribes.delete(ref);
        // A subscribe got through: a waiting retry is moot unless it is a 'since' or 'latest' one
        // and this answers a 'refresh'. Once none waits, the backoff restarts and the error goes.
        if (phase !== 'refresh' || this.subscribeRetryPhase === 'refresh') this.cancelSubscribeRetry();
        if (this.subscribeRetryTimer === null) {
          this.subscribeRetryAttempt = 0;
          if (this.subscribeErrorShown) {
            this.subscribeErrorShown = false;
            this.view.clearError();
          }
        }
        const mine = /** @type {Record<string, Emoji[]> | undefined} */ (p.mine);
        if (phase === 'refresh') {
          this.applyRefresh(p.comments || [], !!p.truncated, mine);
          break;
        }
        this.absorbMine(p.comments || [], mine);
        for (const c of p.comments || []) this.addComment(c, phase === 'since');
        if (phase === 'since') {
          if (p.truncated) {
            // More than one page of missed comments: continue from the last one.
            this.subscribe('since');
            break;
          }
          // New comments are in; now the state of the ones shown (edits, reactions, deletions).
          if (this.comments.size > 0) this.subscribe('refresh');
        } else if (p.truncated && this.view.setMore) {
          this.view.setMore(true); // latest page only: older exist
        }
        this.goLive();
        break;
      }
      case 'comment':
        this.clearTyper(msg.payload.author?.id);
        this.addComment(msg.payload, true);
        break;
      case 'comment_edited':
        if (msg.payload.room === this.room) this.updateComment(msg.payload.comment);
        break;
      case 'reactions': {
        const p = msg.payload;
        const c = p.room === this.room ? this.comments.get(p.id) : undefined;
        if (c) this.updateComment({ ...c, reactions: cleanReactions(p.reactions) });
        break;
      }
      case 'presence':
        if (msg.payload.room === this.room) this.view.setPresence(formatPresence(msg.payload));
        break;
      case 'typing':
        if (msg.payload.room === this.room) this.onTyping(msg.payload.user);
        break;
      case 'history': {
        const p = msg.payload;
        if (p.room !== this.room) break;
        this.historyRef = null;
        this.absorbMine(p.comments || [], /** @type {Record<string, Emoji[]> | undefined} */ (p.mine));
        for (const c of p.comments || []) this.addComment(c, false);
        if (this.view.setMore) this.view.setMore(!!p.more);
        break;
      }
      case 'comment_deleted':
        if (msg.payload.room === this.room && msg.payload.id) this.removeComment(msg.payload.id);
        break;
      case 'ack':
        this.onAck(ref, /** @type {any} */ (msg.payload));
        break;
      case 'notice':
        if (!msg.payload.room || msg.payload.room === this.room) this.view.showNotice(String(msg.payload.text ?? ''));
        break;
      case 'error':
        this.onError(ref, msg.payload);
        break;
      default:
        break;
    }
  }

  goLive() {
    this.subscribed = true;
    this.attempt = 0;
    this.setState('live');
    this.setCanPost(!!this.user);
    this.resendPending();
  }

  /** Asks for the comments before the oldest one on the page (the "older comments" button). */
  loadOlder() {
    if (!this.subscribed || this.historyRef) return false;
    const before = this.view.lowestSeq ? this.view.lowestSeq() : null;
    if (!before) return false;
    this.historyRef = this.ref();
    return this.sendFrame({ type: 'history', ref: this.historyRef, payload: { room: this.room, before, limit: 50 } });
  }

  keepalive() {
    if (!this.socket) return;
    // Nothing at all (not even a pong) for two intervals: the connection is dead.
    if (this.now() - this.lastMessageAt > 2 * PING_INTERVAL_MS + 5_000) {
      this.dropSocket();
      return;
    }
    this.sendFrame({ type: 'ping', payload: {} });
  }

  /**
   * Records `mine` of a `subscribed`/`history` answer for its comments (signed in only).
   * @param {any[]} comments
   * @param {Record<string, Emoji[]> | undefined} mine
   */
  absorbMine(comments, mine) {
    if (!this.user || !mine || typeof mine !== 'object') return;
    for (const c of comments) {
      if (!c || typeof c.id !== 'string') continue;
      const list = Array.isArray(mine[c.id]) ? mine[c.id] : [];
      const set = new Set(list.filter((e) => EMOJI_SET.has(e)));
      if (set.size > 0) this.mine.set(c.id, set);
      else this.mine.delete(c.id);
    }
  }

  /** @param {string} id */
  mineOf(id) {
    return this.mine.get(id) || new Set();
  }

  /**
   * Shows a comment unless it is known; `fresh`: it arrived live (or after a reconnect).
   * @param {any} raw
   * @param {boolean} fresh
   */
  addComment(raw, fresh) {
    const c = normalizeComment(raw, this.room);
    if (!c) return false;
    if (c.seq > this.lastSeq) this.lastSeq = c.seq;
    if (this.seen.has(c.id)) {
      // Known and still shown: its state may be newer (edited, reactions).
      if (this.comments.has(c.id)) this.updateComment(c);
      return false;
    }
    this.seen.add(c.id);
    this.comments.set(c.id, c);
    const own = !!this.username && c.author.id === this.username;
    this.view.addComment(c, own, this.mineOf(c.id), fresh);
    return true;
  }

  /**
   * Updates a shown comment (text, editedAt, reactions); unknown ones are ignored.
   * @param {any} raw
   */
  updateComment(raw) {
    const c = normalizeComment(raw, this.room);
    if (!c) return;
    const old = this.comments.get(c.id);
    if (!old) {
      if (this.parents.has(c.id)) this.parents.set(c.id, c);
      return;
    }
    // `seq` never changes; a page-rendered comment may lack it.
    const merged = { ...c, seq: c.seq || old.seq };
    this.comments.set(c.id, merged);
    this.view.updateComment(merged, this.mineOf(c.id));
  }

  /** @param {string} id */
  removeComment(id) {
    this.seen.add(id);
    this.comments.delete(id);
    this.mine.delete(id);
    if (this.parents.has(id) || this.pendingQuotes(id)) this.rememberParent(id, null);
    this.view.removeComment(id);
  }

  /**
   * Applies a `subscribe` with `limit` answer to the shown comments: updates their state, removes
   * those it proves deleted, adds the ones not shown yet that are not older than the page.
   * @param {any[]} list
   * @param {boolean} truncated
   * @param {Record<string, Emoji[]> | undefined} mine
   */
  applyRefresh(list, truncated, mine) {
    const answer = list.map((c) => normalizeComment(c, this.room)).filter((c) => c !== null);
    const shown = [...this.comments.values()];
    for (const id of staleIds(shown, answer, truncated)) this.removeComment(id);
    this.absorbMine(answer, mine);
    const low = shown.reduce((m, c) => (c.seq > 0 ? Math.min(m, c.seq) : m), Infinity);
    for (const c of answer) {
      if (this.comments.has(c.id)) this.updateComment(c);
      else if (!this.seen.has(c.id) && (shown.length === 0 || c.seq >= low)) this.addComment(c, true);
    }
  }

  /**
   * The parent of a reply: from the page, the cache or `GET /rooms/{room}/comments/{id}` of the
   * gateway. Resolves to null when it is deleted, unknown or cannot be read.
   * @param {string} id
   * @returns {Promise<Comment | null>}
   */
  loadParent(id) {
    const shown = this.comments.get(id);
    if (shown) return Promise.resolve(shown);
    if (this.parents.has(id)) return Promise.resolve(this.parents.get(id) ?? null);
    const inFlight = this.parentFetches.get(id);
    if (inFlight) return inFlight;
    if (!this.httpBase) return Promise.resolve(null);
    const url = `${this.httpBase}/rooms/${encodeURIComponent(this.room)}/comments/${encodeURIComponent(id)}`;
    const request = (async () => {
      try {
        const res = await this.fetch(url, { mode: 'cors', credentials: 'omit', headers: { Accept: 'application/json' } });
        if (res.status === 404) return this.rememberParent(id, null);
        if (!res.ok) return null; // not remembered: a later reply may try again
        const body = await res.json();
        return this.rememberParent(id, normalizeComment(body && body.comment, this.room));
      } catch {
        return null;
      } finally {
        this.parentFetches.delete(id);
      }
    })();
    this.parentFetches.set(id, request);
    return request;
  }

  /** Whether a shown reply quotes `id`. @param {string} id */
  pendingQuotes(id) {
    for (const c of this.comments.values()) if (c.replyTo === id) return true;
    return false;
  }

  /**
   * @param {string} id
   * @param {Comment | null} c
   */
  rememberParent(id, c) {
    if (this.parents.size >= PARENT_CACHE_MAX) {
      const oldest = this.parents.keys().next().value;
      if (oldest !== undefined) this.parents.delete(oldest);
    }
    this.parents.set(id, c);
    return c;
  }

  /** Whether the form may be used (signed in); while offline, posts are queued until live. @param {boolean} can */
  setCanPost(can) {
    this.canPost = can;
    this.view.setCanPost(can, this.pending.length > 0);
  }

  /**
   * Submits a comment (a reply when `replyTo` is set); returns {ok, message}. The text is kept in
   * the form until the ack.
   * @param {string} rawText
   * @param {string | null} [replyTo]
   */
  post(rawText, replyTo = null) {
    if (!this.username || !this.canPost) return { ok: false, message: 'Sign in to comment.' };
    const check = checkText(rawText);
    if (!check.ok) {
      this.view.showError(check.message);
      return check;
    }
    if (this.pending.length > 0) return { ok: false, message: 'Still sending the previous comment.' };
    const parent = replyTo || null;
    // A retry of the same text (after an error or a drop) keeps its clientId: never a duplicate.
    const same = this.draft && this.draft.text === check.text && this.draft.replyTo === parent;
    const clientId = same && this.draft ? this.draft.clientId : this.uuid();
    this.draft = { clientId, text: check.text, replyTo: parent };
    /** @type {PendingPost} */
    const p = { ref: this.ref(), clientId, text: check.text, replyTo: parent, timer: null };
    this.pending.push(p);
    this.view.clearError();
    this.view.setSending(true);
    if (this.subscribed) this.sendPost(p);
    return { ok: true, message: '' };
  }

  /** @param {PendingPost} p */
  sendPost(p) {
    /** @type {{room: string, text: string, clientId: string, replyTo?: string}} */
    const payload = { room: this.room, text: p.text, clientId: p.clientId };
    if (p.replyTo) payload.replyTo = p.replyTo;
    if (!this.sendFrame({ type: 'post', ref: p.ref, payload })) return;
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

  /** Why an account action cannot go out now, or '' when it can. */
  actionBlocker() {
    if (!this.user) return 'Sign in to take part in the discussion.';
    if (!this.subscribed) return 'Offline: try again once the comments are live.';
    return '';
  }

  /**
   * Edits an own comment; the view hears back through editDone.
   * @param {string} id
   * @param {string} rawText
   */
  edit(id, rawText) {
    const blocked = this.actionBlocker();
    if (blocked) return { ok: false, message: blocked };
    const check = checkText(rawText);
    if (!check.ok) return check;
    const c = this.comments.get(id);
    if (!c) return { ok: false, message: 'That comment is gone.' };
    if (c.text === check.text) return { ok: true, message: '', unchanged: true };
    const ref = this.ref();
    this.requests.set(ref, { kind: 'edit', id });
    this.sendFrame({ type: 'edit', ref, payload: { room: this.room, id, text: check.text } });
    return { ok: true, message: '' };
  }

  /**
   * Deletes a comment (own, or any for an admin).
   * @param {string} id
   */
  remove(id) {
    const blocked = this.actionBlocker();
    if (blocked) return { ok: false, message: blocked };
    const ref = this.ref();
    this.requests.set(ref, { kind: 'delete', id });
    this.sendFrame({ type: 'delete', ref, payload: { room: this.room, id } });
    return { ok: true, message: '' };
  }

  /**
   * Toggles the user's `emoji` on comment `id`.
   * @param {string} id
   * @param {Emoji} emoji
   */
  react(id, emoji) {
    const blocked = this.actionBlocker();
    if (blocked) return { ok: false, message: blocked };
    if (!EMOJI_SET.has(emoji)) return { ok: false, message: 'Unknown reaction.' };
    if (!this.comments.has(id)) return { ok: false, message: 'That comment is gone.' };
    const on = !this.mineOf(id).has(emoji);
    for (const r of this.requests.values()) {
      if (r.kind === 'react' && r.id === id && r.emoji === emoji) return { ok: false, message: '' };
    }
    const ref = this.ref();
    this.requests.set(ref, { kind: 'react', id, emoji, on });
    this.sendFrame({ type: 'react', ref, payload: { room: this.room, id, emoji, on } });
    return { ok: true, message: '' };
  }

  /** The user is typing in the form: tell the room, at most once per TYPING_SEND_INTERVAL_MS. */
  noteTyping() {
    if (!this.user || !this.subscribed) return false;
    const now = this.now();
    if (now - this.lastTypingSentAt < TYPING_SEND_INTERVAL_MS) return false;
    this.lastTypingSentAt = now;
    return this.sendFrame({ type: 'typing', payload: { room: this.room } });
  }

  /** @param {{id?: string, name?: string} | undefined} user */
  onTyping(user) {
    const id = user && typeof user.id === 'string' ? user.id : '';
    if (!id || (this.user && id === this.user.id)) return;
    const known = this.typers.get(id);
    if (known) this.timers.clearTimeout(known.timer);
    else if (this.typers.size >= TYPERS_MAX) return;
    const timer = this.timers.setTimeout(() => this.clearTyper(id), TYPING_SHOW_MS);
    this.typers.set(id, { name: String(user?.name || id), timer });
    this.showTypers();
  }

  /** @param {string | undefined} id */
  clearTyper(id) {
    const t = id ? this.typers.get(id) : undefined;
    if (!t || !id) return;
    this.timers.clearTimeout(t.timer);
    this.typers.delete(id);
    this.showTypers();
  }

  clearTypers() {
    if (this.typers.size === 0) return;
    for (const t of this.typers.values()) this.timers.clearTimeout(t.timer);
    this.typers.clear();
    this.showTypers();
  }

  showTypers() {
    this.view.setTyping(formatTyping([...this.typers.values()].map((t) => t.name)));
  }

  /**
   * @param {PendingRequest} r
   * @param {string} message
   */
  failRequest(r, message) {
    if (r.kind === 'edit') this.view.editDone(r.id, false, message);
    else if (r.kind === 'delete') this.view.deleteFailed(r.id, message);
    else if (message) this.view.showError(message);
  }

  /**
   * @param {string | null} ref
   * @param {any} payload
   */
  onAck(ref, payload) {
    const request = ref ? this.requests.get(ref) : undefined;
    if (ref && request) {
      this.requests.delete(ref);
      if (request.kind === 'edit') {
        if (payload && payload.comment) this.updateComment(payload.comment);
        this.view.editDone(request.id, true, '');
      } else if (request.kind === 'delete') {
        this.removeComment(request.id);
      } else if (request.kind === 'react' && request.emoji) {
        const set = new Set(this.mineOf(request.id));
        if (request.on) set.add(request.emoji);
        else set.delete(request.emoji);
        if (set.size > 0) this.mine.set(request.id, set);
        else this.mine.delete(request.id);
        const c = this.comments.get(request.id);
        if (c) {
          const reactions = payload && payload.reactions ? cleanReactions(payload.reactions) : c.reactions;
          this.updateComment({ ...c, reactions });
        }
      }
      return;
    }
    const i = this.pending.findIndex((p) => p.ref === ref);
    if (i < 0) return;
    const [p] = this.pending.splice(i, 1);
    this.clearAckTimer(p);
    if (payload && payload.comment) this.addComment(payload.comment, false);
    if (this.draft && this.draft.clientId === p.clientId) this.draft = null;
    if (this.pending.length === 0) {
      this.view.setSending(false);
      this.view.postDone(p.text);
    }
  }

  /**
   * @param {string | null} ref
   * @param {ErrorPayload} payload
   */
  onError(ref, payload) {
    const code = payload.code;
    const request0 = ref ? this.requests.get(ref) : undefined;
    const message = friendlyError(code, String(payload.message || code || 'error'), request0 ? request0.kind : 'post');
    if (ref && ref === this.historyRef) {
      this.historyRef = null;
      this.view.showError(`Cannot load older comments: ${message}`);
      return;
    }
    if (ref && this.subscribes.has(ref)) {
      const phase = this.subscribes.get(ref) || 'latest';
      this.subscribes.delete(ref);
      this.subscribeErrorShown = true;
      if (SUBSCRIBE_FINAL_CODES.has(code)) {
        this.view.showError(`Cannot load live comments: ${message}`);
        return;
      }
      // The store hangs or restarts (`unavailable`), too many requests, …: the socket is fine,
      // so subscribe again on it after a while instead of staying not live until a reload.
      const delay = this.scheduleSubscribeRetry(phase);
      if (delay !== null) {
        const why = friendlyError(code, String(payload.message || code || 'error'), 'subscribe');
        this.view.showError(`Cannot load live comments: ${why}; trying again in ${Math.max(1, Math.round(delay / 1000))} s.`);
      }
      return;
    }
    const request = ref ? this.requests.get(ref) : undefined;
    if (ref && request) {
      this.requests.delete(ref);
      if (code === 'not_found' && request.kind !== 'edit') {
        // Gone meanwhile: the comment_deleted may still be on its way.
        this.removeComment(request.id);
        return;
      }
      this.failRequest(request, message);
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
        this.subscribe(this.lastSeq > 0 ? 'since' : 'latest');
        return;
      }
      // Refused (or failed): the text stays in the form; the same text retries with the same clientId.
      if (this.pending.length === 0) this.view.setSending(false);
      if (code === 'unauthorized') this.view.showError('Sign in to comment.');
      else if (code === 'not_found' && p.replyTo) this.view.showError('The comment you reply to was deleted.');
      else this.view.showError(message);
      return;
    }
    this.view.showError(message);
  }
}

/**
 * A reader-facing wording of a gateway error answering a request of `kind` ('subscribe': the
 * middle of "Cannot load live comments: …; trying again in N s.").
 * @param {string | undefined} code
 * @param {string} message
 * @param {'post' | 'edit' | 'delete' | 'react' | 'subscribe'} [kind]
 */
export function friendlyError(code, message, kind = 'post') {
  if (kind === 'subscribe') {
    if (code === 'unavailable') return 'the comments are unavailable right now';
    if (code === 'rate_limited') return 'too many requests';
    return message.replace(/[.;\s]+$/, '');
  }
  switch (code) {
    case 'rate_limited': return 'Slow down a little, then try again.';
    case 'forbidden':
      if (kind === 'edit') return 'This comment can no longer be edited (the edit window has passed).';
      if (kind === 'delete') return 'You may only delete your own comments.';
      return 'You may not do that.';
    case 'unauthorized': return 'Sign in to take part in the discussion.';
    case 'unavailable': return 'Comments are unavailable right now; try again.';
    case 'not_found': return kind === 'edit' ? 'That comment was deleted.' : message;
    default: return message;
  }
}

// ---------------------------------------------------------------- page side

/**
 * @template {keyof HTMLElementTagNameMap} K
 * @param {Document} doc
 * @param {K} tag
 * @param {string} [className]
 * @param {string} [text]
 * @returns {HTMLElementTagNameMap[K]}
 */
function el(doc, tag, className, text) {
  const e = doc.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

/**
 * @param {Document} doc
 * @param {string} label visible text
 * @param {string} action data-action
 * @param {string} [aria] aria-label
 */
function actionButton(doc, label, action, aria) {
  const b = el(doc, 'button', `comment-action comment-${action}`, label);
  b.type = 'button';
  b.dataset.action = action;
  if (aria) b.setAttribute('aria-label', aria);
  return b;
}

/** The element id of a comment's list item. @param {string} id */
export function commentElementId(id) {
  return `comment-${id}`;
}

/** The page side of CommentsClient, working on the #comments element. @implements {View} */
export class DomView {
  /**
   * @param {HTMLElement} root
   * @param {Document} [doc]
   * @param {{now?: () => number, win?: any}} [env]
   */
  constructor(root, doc = root.ownerDocument, env = {}) {
    this.root = root;
    this.doc = doc;
    this.win = env.win || doc.defaultView;
    this.now = env.now || (() => Date.now());
    /** @type {CommentsClient | null} */
    this.client = null;
    /** @type {UserInfo | null} */
    this.user = null;
    this.editWindowMs = Number(root.dataset.editWindowSecs) > 0 ? Number(root.dataset.editWindowSecs) * 1000 : EDIT_WINDOW_MS;
    /** @type {HTMLElement} */
    this.list = root.querySelector('.comment-list') || (() => {
      const list = el(doc, 'ol', 'comment-list');
      root.append(list);
      return list;
    })();
    this.list.setAttribute('aria-label', 'Comments');
    /** @type {HTMLElement} */
    this.state = root.querySelector('.conn-state') || (() => {
      const s = el(doc, 'div', 'conn-state');
      s.setAttribute('role', 'status');
      const heading = root.querySelector('h1, h2, h3');
      if (heading && heading.parentElement === root) heading.after(s);
      else root.prepend(s);
      return s;
    })();
    /** @type {HTMLElement} */
    this.presence = root.querySelector('.comments-presence') || (() => {
      const p = el(doc, 'p', 'comments-presence');
      p.hidden = true;
      this.state.after(p);
      return p;
    })();
    /** @type {HTMLFormElement | null} */
    this.form = root.querySelector('form.comment-form');
    /** @type {HTMLTextAreaElement | null} */
    this.textarea = this.form ? this.form.querySelector('textarea[name="text"], textarea') : null;
    /** @type {HTMLButtonElement | null} */
    this.button = this.form ? this.form.querySelector('button[type="submit"], button:not([type]), input[type="submit"]') : null;
    this.username = root.dataset.username || '';
    /** @type {string | null} the comment the form replies to */
    this.replyTo = null;
    /** @type {string[]} ids of fresh comments below the viewport */
    this.unseen = [];
    /** @type {HTMLElement | null} */
    this.marker = null;
    /** @type {HTMLElement | null} */
    this.typing = null;
    // The template renders the form hidden (it needs JS); show it to signed-in users.
    if (this.form && this.username) this.form.hidden = false;
    this.setState('connecting');
  }

  /** Creates the comment form when the template did not render one (signed-in users only). */
  ensureForm() {
    if (this.form || !this.username) return;
    const form = /** @type {HTMLFormElement} */ (el(this.doc, 'form', 'comment-form'));
    const label = el(this.doc, 'label', 'visually-hidden', 'Your comment');
    label.htmlFor = 'comment-text';
    const textarea = /** @type {HTMLTextAreaElement} */ (el(this.doc, 'textarea'));
    textarea.id = 'comment-text';
    textarea.name = 'text';
    textarea.rows = 3;
    textarea.maxLength = MAX_TEXT_CODE_POINTS * 2;
    textarea.required = true;
    textarea.placeholder = 'Your comment';
    const button = /** @type {HTMLButtonElement} */ (el(this.doc, 'button', '', 'Send'));
    button.type = 'submit';
    form.append(label, textarea, button);
    this.list.after(form);
    this.form = form;
    this.textarea = textarea;
    this.button = button;
  }

  /** The "X is typing…" line, above the form (or below the list). */
  typingLine() {
    if (!this.typing) {
      const t = this.root.querySelector('.comments-typing') || el(this.doc, 'p', 'comments-typing');
      t.setAttribute('aria-live', 'polite');
      if (!t.parentElement) (this.form || this.list).before(t);
      this.typing = /** @type {HTMLElement} */ (t);
    }
    return /** @type {HTMLElement} */ (this.typing);
  }

  /** @returns {HTMLElement[]} */
  items() {
    return [.../** @type {NodeListOf<HTMLElement>} */ (this.list.querySelectorAll(':scope > .comment'))];
  }

  /** @param {string} id */
  item(id) {
    return this.items().find((x) => x.dataset.id === id) || null;
  }

  lowestSeq() {
    let low = null;
    for (const e of this.items()) {
      const seq = parseSeq(e.dataset.seq);
      if (seq && (low === null || seq < low)) low = seq;
    }
    return low;
  }

  /** Shows or hides the "older comments" button (the template says data-more="true"). @param {boolean} more */
  setMore(more) {
    this.root.dataset.more = more ? 'true' : 'false';
    if (!this.olderButton) {
      if (!more) return;
      const button = el(this.doc, 'button', 'comment-older secondary', 'Show older comments');
      button.type = 'button';
      button.addEventListener('click', () => { if (this.client) this.client.loadOlder(); });
      this.list.before(button);
      /** @type {HTMLButtonElement} */
      this.olderButton = button;
    }
    this.olderButton.hidden = !more;
  }

  initialLastSeq() {
    return parseSeq(this.root.dataset.lastSeq) ?? 0;
  }

  /** The server-rendered comments as protocol comments (then drawn again by this module). */
  initialComments() {
    /** @type {Comment[]} */
    const out = [];
    for (const e of this.items()) {
      let reactions = {};
      try {
        reactions = cleanReactions(JSON.parse(e.dataset.reactions || '{}'));
      } catch { /* leave empty */ }
      const author = e.querySelector('.comment-author');
      const time = e.querySelector('time.comment-time');
      const text = e.querySelector('.comment-text');
      out.push({
        id: e.dataset.id || '',
        seq: parseSeq(e.dataset.seq) ?? 0,
        room: String(this.root.dataset.room),
        author: { id: e.dataset.author || '', name: author ? String(author.textContent).trim() : '' },
        text: text ? String(text.textContent) : '',
        createdAt: time ? time.getAttribute('datetime') || '' : '',
        replyTo: e.dataset.replyTo || null,
        editedAt: e.dataset.editedAt || null,
        reactions,
      });
    }
    return out;
  }

  /** Draws the server-rendered comments again with their controls (the client knows them now). */
  hydrate() {
    if (!this.client) return;
    for (const e of this.items()) {
      const c = e.dataset.id ? this.client.comments.get(e.dataset.id) : undefined;
      if (!c) continue;
      const own = !!this.username && c.author.id === this.username;
      e.replaceWith(this.render(c, own, new Set()));
    }
  }

  /** @param {string} state */
  setState(state) {
    /** @type {Record<string, string>} */
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

  /** @param {UserInfo | null} user */
  setUser(user) {
    this.user = user;
    for (const e of this.items()) this.fillActions(e);
  }

  /** @param {string} text */
  setPresence(text) {
    this.presence.textContent = text;
    this.presence.hidden = !text;
  }

  /** @param {string} text */
  setTyping(text) {
    const t = this.typingLine();
    t.textContent = text;
    t.hidden = !text;
  }

  /**
   * Builds a comment's list item; all user data goes in as text.
   * @param {Comment} c
   * @param {boolean} own
   * @param {Set<Emoji>} mine
   */
  render(c, own, mine) {
    const doc = this.doc;
    const itemTag = this.list.tagName === 'UL' || this.list.tagName === 'OL' ? 'li' : 'div';
    const li = el(doc, itemTag, 'comment');
    li.classList.toggle('own', own);
    li.classList.toggle('reply', !!c.replyTo);
    li.id = commentElementId(c.id);
    li.dataset.id = c.id;
    if (c.seq) li.dataset.seq = String(c.seq);
    li.dataset.author = c.author.id;
    li.dataset.createdAt = c.createdAt;
    li.tabIndex = -1; // focus target of quote links
    if (c.replyTo) {
      li.dataset.replyTo = c.replyTo;
      li.append(this.renderQuote(c.replyTo));
    }
    const meta = el(doc, 'div', 'comment-meta');
    const author = el(doc, c.author.id ? 'a' : 'span', 'comment-author', c.author.name || c.author.id);
    if (c.author.id) /** @type {HTMLAnchorElement} */ (author).href = `/view/user/profile/${encodeURIComponent(c.author.id)}`;
    const time = el(doc, 'time', 'comment-time');
    time.dateTime = c.createdAt;
    this.fillTime(time);
    const edited = el(doc, 'span', 'comment-edited', 'edited');
    meta.append(author, ' ', time, ' ', edited);
    const text = el(doc, 'p', 'comment-text', c.text);
    const reactions = el(doc, 'div', 'comment-reactions');
    reactions.setAttribute('role', 'group');
    reactions.setAttribute('aria-label', 'Reactions');
    const actions = el(doc, 'div', 'comment-actions');
    const footer = el(doc, 'div', 'comment-footer');
    footer.append(reactions, actions);
    li.append(meta, text, footer);
    this.fillEdited(li, c);
    this.fillReactions(li, c, mine);
    this.fillActions(li);
    return li;
  }

  /** @param {string} parentId */
  renderQuote(parentId) {
    const doc = this.doc;
    const quote = el(doc, 'blockquote', 'comment-quote');
    quote.dataset.parentId = parentId;
    const link = el(doc, 'a', 'comment-quote-link');
    link.href = `#${commentElementId(parentId)}`;
    link.dataset.action = 'goto-parent';
    link.append(el(doc, 'span', 'comment-quote-author', ''), el(doc, 'span', 'comment-quote-text', 'an earlier comment'));
    quote.append(link);
    this.fillQuote(quote);
    return quote;
  }

  /** Fills a quote from the parent (on the page, cached or fetched). @param {HTMLElement} quote */
  fillQuote(quote) {
    const id = quote.dataset.parentId || '';
    const show = (/** @type {Comment | null | undefined} */ parent, /** @type {boolean} */ final) => {
      const link = quote.querySelector('.comment-quote-link');
      const author = quote.querySelector('.comment-quote-author');
      const text = quote.querySelector('.comment-quote-text');
      if (!link || !author || !text) return;
      quote.classList.toggle('deleted', !parent && final);
      if (parent) {
        author.textContent = `${parent.author.name || parent.author.id}: `;
        text.textContent = quoteText(parent.text);
        link.setAttribute('aria-label', `In reply to ${parent.author.name || parent.author.id}: ${quoteText(parent.text)}`);
      } else {
        author.textContent = '';
        text.textContent = final ? 'a deleted comment' : 'an earlier comment';
        link.setAttribute('aria-label', `In reply to ${text.textContent}`);
      }
    };
    if (!this.client) return show(null, false);
    const onPage = this.client.comments.get(id);
    if (onPage) return show(onPage, true);
    if (this.client.parents.has(id)) return show(this.client.parents.get(id), true);
    show(null, false);
    this.client.loadParent(id).then((p) => show(p, p !== null || (!!this.client && this.client.parents.has(id))));
    return undefined;
  }

  /** @param {HTMLTimeElement} time */
  fillTime(time) {
    const iso = time.dateTime || time.getAttribute('datetime') || '';
    time.textContent = formatRelative(iso, this.now());
    time.title = formatExact(iso);
  }

  /** @param {HTMLElement} li @param {Comment} c */
  fillEdited(li, c) {
    const edited = /** @type {HTMLElement | null} */ (li.querySelector('.comment-edited'));
    if (!edited) return;
    edited.hidden = !c.editedAt;
    if (c.editedAt) {
      li.dataset.editedAt = c.editedAt;
      edited.title = `edited ${formatExact(c.editedAt)}`;
    } else {
      delete li.dataset.editedAt;
    }
  }

  /**
   * Keeps keyboard focus on the "same" control when part of an item is drawn again.
   * @param {HTMLElement} li
   * @param {() => void} draw
   */
  keepFocus(li, draw) {
    const active = /** @type {HTMLElement | null} */ (this.doc.activeElement);
    const key = active && li.contains(active) && active.dataset ? `${active.dataset.action || ''}|${active.dataset.emoji || ''}` : null;
    draw();
    if (!key || (active && active.isConnected)) return;
    const [action, emoji] = key.split('|');
    for (const b of li.querySelectorAll('[data-action]')) {
      const be = /** @type {HTMLElement} */ (b);
      if (be.dataset.action === action && (be.dataset.emoji || '') === emoji) {
        be.focus();
        return;
      }
    }
  }

  /**
   * The reaction buttons: one per emoji with a count, then "add a reaction" and its picker.
   * @param {HTMLElement} li
   * @param {Comment} c
   * @param {Set<Emoji>} mine
   */
  fillReactions(li, c, mine) {
    const box = li.querySelector('.comment-reactions');
    if (!box) return;
    this.keepFocus(li, () => {
      const wasOpen = !!box.querySelector('.reaction-picker:not([hidden])');
      box.replaceChildren();
      for (const [emoji, name] of EMOJI) {
        const count = c.reactions[emoji] || 0;
        if (count <= 0) continue;
        const b = el(this.doc, 'button', 'reaction');
        b.type = 'button';
        b.dataset.action = 'react';
        b.dataset.emoji = emoji;
        const pressed = mine.has(emoji);
        b.classList.toggle('mine', pressed);
        b.setAttribute('aria-pressed', pressed ? 'true' : 'false');
        b.setAttribute('aria-label', `${name}: ${count}${pressed ? ', including yours' : ''}`);
        b.append(el(this.doc, 'span', 'reaction-emoji', emoji), el(this.doc, 'span', 'reaction-count', String(count)));
        box.append(b);
      }
      const add = el(this.doc, 'button', 'reaction-add', '☺+');
      add.type = 'button';
      add.dataset.action = 'toggle-picker';
      add.setAttribute('aria-label', 'Add a reaction');
      add.setAttribute('aria-expanded', wasOpen ? 'true' : 'false');
      const picker = el(this.doc, 'div', 'reaction-picker');
      picker.setAttribute('role', 'group');
      picker.setAttribute('aria-label', 'Choose a reaction');
      picker.hidden = !wasOpen;
      for (const [emoji, name] of EMOJI) {
        const b = el(this.doc, 'button', 'reaction-choice', emoji);
        b.type = 'button';
        b.dataset.action = 'pick';
        b.dataset.emoji = emoji;
        b.setAttribute('aria-label', `React with ${name}`);
        b.setAttribute('aria-pressed', mine.has(emoji) ? 'true' : 'false');
        picker.append(b);
      }
      box.append(add, picker);
    });
  }

  /** Reply / Edit / Delete buttons as the user may use them now. @param {HTMLElement} li */
  fillActions(li) {
    const box = li.querySelector('.comment-actions');
    if (!box || li.dataset.confirming === 'true') return;
    const id = li.dataset.id || '';
    const c = this.client ? this.client.comments.get(id) : undefined;
    const user = this.user;
    const author = c ? c.author.name || c.author.id : 'this comment';
    this.keepFocus(li, () => {
      box.replaceChildren();
      box.append(actionButton(this.doc, 'Reply', 'reply', `Reply to ${author}`));
      if (user && c && canEdit(c, user.id, this.now(), this.editWindowMs) && li.dataset.editing !== 'true') {
        box.append(actionButton(this.doc, 'Edit', 'edit', 'Edit your comment'));
      }
      if (user && c && (c.author.id === user.id || user.role === 'admin')) {
        box.append(actionButton(this.doc, 'Delete', 'delete', c.author.id === user.id ? 'Delete your comment' : `Delete the comment of ${author}`));
      }
    });
  }

  /**
   * @param {Comment} c
   * @param {boolean} own
   * @param {Set<Emoji>} mine
   * @param {boolean} fresh
   */
  addComment(c, own, mine, fresh) {
    const item = this.render(c, own, mine);
    // Keep the list in seq order (a live comment normally goes last).
    const items = this.items();
    const seqs = items.map((x) => parseSeq(x.dataset.seq) ?? 0);
    const at = c.seq ? insertionIndex(seqs, c.seq) : items.length;
    if (at < items.length) items[at].before(item);
    else this.list.append(item);
    for (const empty of this.root.querySelectorAll('.comment-empty, .comments-empty')) /** @type {HTMLElement} */ (empty).hidden = true;
    // Replies on the page whose parent just arrived (history) get their quote.
    for (const q of this.list.querySelectorAll('.comment-quote')) {
      if (/** @type {HTMLElement} */ (q).dataset.parentId === c.id) this.fillQuote(/** @type {HTMLElement} */ (q));
    }
    if (own && fresh) this.scrollIntoView(item);
    else if (fresh && !this.isVisible(item)) this.markUnseen(c.id);
  }

  /** @param {Comment} c @param {Set<Emoji>} mine */
  updateComment(c, mine) {
    const li = this.item(c.id);
    if (!li) return;
    const text = li.querySelector('.comment-text');
    if (text && text.textContent !== c.text) text.textContent = c.text;
    this.fillEdited(li, c);
    this.fillReactions(li, c, mine);
    for (const q of this.list.querySelectorAll('.comment-quote')) {
      if (/** @type {HTMLElement} */ (q).dataset.parentId === c.id) this.fillQuote(/** @type {HTMLElement} */ (q));
    }
  }

  /** @param {string} id */
  removeComment(id) {
    const li = this.item(id);
    if (li) {
      const focused = li.contains(this.doc.activeElement);
      const next = /** @type {HTMLElement | null} */ (li.nextElementSibling || li.previousElementSibling);
      li.remove();
      if (focused) (next || this.list).focus();
    }
    if (this.replyTo === id) this.setReplyTo(null);
    this.unseen = this.unseen.filter((x) => x !== id);
    this.updateMarker();
    for (const q of this.list.querySelectorAll('.comment-quote')) {
      if (/** @type {HTMLElement} */ (q).dataset.parentId === id) this.fillQuote(/** @type {HTMLElement} */ (q));
    }
  }

  // -------------------------------------------------- "new comments ↓"

  /** Whether an element is (partly) inside the viewport. @param {HTMLElement} e */
  isVisible(e) {
    if (!this.win || typeof e.getBoundingClientRect !== 'function') return true;
    const r = e.getBoundingClientRect();
    const h = this.win.innerHeight || this.doc.documentElement.clientHeight;
    return r.bottom > 0 && r.top < h;
  }

  /** @param {string} id */
  markUnseen(id) {
    if (!this.unseen.includes(id)) this.unseen.push(id);
    this.updateMarker();
  }

  /** Forgets unseen comments the reader has scrolled to; hides the marker when none are left. */
  updateMarker() {
    this.unseen = this.unseen.filter((id) => {
      const e = this.item(id);
      return !!e && !this.isVisible(e);
    });
    if (this.unseen.length === 0) {
      if (this.marker) this.marker.hidden = true;
      return;
    }
    if (!this.marker) {
      const m = el(this.doc, 'button', 'comments-new-marker', 'new comments ↓');
      m.type = 'button';
      m.addEventListener('click', () => this.jumpToUnseen());
      this.root.append(m);
      this.marker = m;
    }
    const marker = /** @type {HTMLElement} */ (this.marker);
    const n = this.unseen.length;
    marker.setAttribute('aria-label', `${n} new comment${n === 1 ? '' : 's'} below: show`);
    marker.hidden = false;
  }

  jumpToUnseen() {
    const first = this.unseen.map((id) => this.item(id)).find((e) => e);
    this.unseen = [];
    if (first) {
      this.scrollIntoView(first);
      first.focus({ preventScroll: true });
    }
    if (this.marker) this.marker.hidden = true;
  }

  /** @param {HTMLElement} e */
  scrollIntoView(e) {
    if (typeof e.scrollIntoView === 'function') e.scrollIntoView({ block: 'nearest' });
  }

  // -------------------------------------------------- messages and the form

  notice() {
    let n = this.root.querySelector('.comment-notice');
    if (!n) {
      n = el(this.doc, 'div', 'comment-notice');
      n.setAttribute('role', 'alert');
      this.state.after(n);
    }
    return /** @type {HTMLElement} */ (n);
  }

  /** @param {string} text */
  showNotice(text) {
    const n = this.notice();
    n.textContent = text;
    n.hidden = false;
  }

  errorBox() {
    let e = this.root.querySelector('.comment-error');
    if (!e) {
      e = el(this.doc, 'div', 'comment-error');
      e.setAttribute('role', 'alert');
      if (this.form) this.form.after(e);
      else this.list.after(e);
    }
    return /** @type {HTMLElement} */ (e);
  }

  /** @param {string} message */
  showError(message) {
    const e = this.errorBox();
    e.textContent = message;
    e.hidden = !message;
  }

  clearError() {
    const e = this.root.querySelector('.comment-error');
    if (e) {
      e.textContent = '';
      /** @type {HTMLElement} */ (e).hidden = true;
    }
  }

  /**
   * An inline "sign in to …" invitation under a comment (signed-out readers).
   * @param {HTMLElement} li
   * @param {string} what
   */
  inviteSignIn(li, what) {
    let hint = li.querySelector('.comment-signin-hint');
    if (!hint) {
      hint = el(this.doc, 'p', 'comment-signin-hint');
      hint.setAttribute('role', 'status');
      li.append(hint);
    }
    const a = el(this.doc, 'a', '', 'Sign in');
    a.href = `/view/user/login`;
    hint.replaceChildren(a, ` to ${what}.`);
    a.focus();
  }

  setSignedOut() {
    this.username = '';
    if (this.form) this.form.hidden = true;
    if (!this.root.querySelector('.comment-signin, .comments-hint')) {
      const p = el(this.doc, 'p', 'comment-signin');
      const a = el(this.doc, 'a', '', 'Sign in to comment');
      a.href = '/view/user/login';
      p.append(a);
      (this.form || this.list).after(p);
    }
  }

  /** @param {boolean} can @param {boolean} sending */
  setCanPost(can, sending) {
    if (!this.form) return;
    if (this.button) this.button.disabled = !can || sending;
    this.form.dataset.ready = can ? 'true' : 'false';
  }

  /** @param {boolean} sending */
  setSending(sending) {
    if (!this.form) return;
    this.form.dataset.sending = sending ? 'true' : 'false';
    if (this.textarea) this.textarea.readOnly = sending;
    if (this.button) this.button.disabled = sending || this.form.dataset.ready !== 'true';
    this.form.setAttribute('aria-busy', sending ? 'true' : 'false');
  }

  /** @param {string} text */
  postDone(text) {
    if (this.textarea && this.textarea.value.trim() === text) this.textarea.value = '';
    this.setReplyTo(null);
    if (this.textarea) this.textarea.focus();
  }

  /** Shows (or clears) "Replying to …" above the form. @param {string | null} id */
  setReplyTo(id) {
    this.replyTo = id;
    if (!this.form) return;
    let box = /** @type {HTMLElement | null} */ (this.form.querySelector('.comment-replying'));
    if (!id) {
      if (box) box.remove();
      delete this.form.dataset.replyTo;
      if (this.textarea) this.textarea.setAttribute('aria-label', 'Your comment');
      return;
    }
    this.form.dataset.replyTo = id;
    if (!box) {
      box = el(this.doc, 'div', 'comment-replying');
      this.form.prepend(box);
    }
    const replying = /** @type {HTMLElement} */ (box);
    const c = this.client ? this.client.comments.get(id) : undefined;
    const who = c ? c.author.name || c.author.id : '';
    const cancel = actionButton(this.doc, '✕', 'cancel-reply', 'Cancel the reply');
    replying.replaceChildren(
      el(this.doc, 'span', 'comment-replying-label', `Replying to ${who}: `),
      el(this.doc, 'span', 'comment-replying-text', c ? quoteText(c.text, 60) : ''),
      ' ',
      cancel,
    );
    cancel.addEventListener('click', () => {
      this.setReplyTo(null);
      if (this.textarea) this.textarea.focus();
    });
    if (this.textarea) {
      this.textarea.setAttribute('aria-label', `Your reply to ${who}`);
      this.textarea.focus();
    }
  }

  /** Swaps a comment's text for an edit box. @param {HTMLElement} li */
  startEdit(li) {
    const id = li.dataset.id || '';
    const c = this.client ? this.client.comments.get(id) : undefined;
    if (!c || li.dataset.editing === 'true') return;
    li.dataset.editing = 'true';
    const text = /** @type {HTMLElement | null} */ (li.querySelector('.comment-text'));
    if (text) text.hidden = true;
    const box = el(this.doc, 'div', 'comment-edit');
    const label = el(this.doc, 'label', 'visually-hidden', 'Edit your comment');
    const area = /** @type {HTMLTextAreaElement} */ (el(this.doc, 'textarea', 'comment-edit-text'));
    area.id = `edit-${commentElementId(id)}`;
    label.htmlFor = area.id;
    area.rows = 3;
    area.value = c.text;
    const save = actionButton(this.doc, 'Save', 'edit-save', 'Save the edit');
    const cancel = actionButton(this.doc, 'Cancel', 'edit-cancel', 'Cancel the edit');
    const row = el(this.doc, 'div', 'comment-edit-buttons');
    row.append(save, cancel);
    box.append(label, area, row);
    (text || li.querySelector('.comment-meta') || li).after(box);
    this.fillActions(li);
    area.focus();
    area.setSelectionRange(area.value.length, area.value.length);
  }

  /** @param {HTMLElement} li @param {boolean} refocus */
  endEdit(li, refocus) {
    li.querySelector('.comment-edit')?.remove();
    const text = /** @type {HTMLElement | null} */ (li.querySelector('.comment-text'));
    if (text) text.hidden = false;
    delete li.dataset.editing;
    this.fillActions(li);
    if (refocus) /** @type {HTMLElement | null} */ (li.querySelector('[data-action="edit"]') || li)?.focus();
  }

  /** @param {string} id @param {boolean} ok @param {string} message */
  editDone(id, ok, message) {
    const li = this.item(id);
    if (!li) return;
    if (ok) {
      this.endEdit(li, true);
      return;
    }
    let err = li.querySelector('.comment-edit-error');
    if (!err) {
      err = el(this.doc, 'p', 'comment-edit-error');
      err.setAttribute('role', 'alert');
      (li.querySelector('.comment-edit') || li).append(err);
    }
    err.textContent = message;
    const save = /** @type {HTMLButtonElement | null} */ (li.querySelector('[data-action="edit-save"]'));
    if (save) save.disabled = false;
  }

  /** Asks "Delete this comment?" in place of the actions. @param {HTMLElement} li */
  confirmDelete(li) {
    const box = li.querySelector('.comment-actions');
    if (!box) return;
    li.dataset.confirming = 'true';
    const question = el(this.doc, 'span', 'comment-confirm-text', 'Delete this comment?');
    question.id = `confirm-${commentElementId(li.dataset.id || '')}`;
    const yes = actionButton(this.doc, 'Yes, delete', 'delete-confirm');
    yes.classList.add('danger');
    yes.setAttribute('aria-describedby', question.id);
    const no = actionButton(this.doc, 'Cancel', 'delete-cancel', 'Keep the comment');
    const group = el(this.doc, 'span', 'comment-confirm');
    group.setAttribute('role', 'group');
    group.setAttribute('aria-label', 'Confirm deletion');
    group.append(question, ' ', yes, ' ', no);
    box.replaceChildren(group);
    no.focus();
  }

  /** @param {HTMLElement} li @param {boolean} refocus */
  cancelDelete(li, refocus) {
    delete li.dataset.confirming;
    this.fillActions(li);
    if (refocus) /** @type {HTMLElement | null} */ (li.querySelector('[data-action="delete"]'))?.focus();
  }

  /** @param {string} id @param {string} message */
  deleteFailed(id, message) {
    const li = this.item(id);
    if (li) this.cancelDelete(li, true);
    this.showError(message);
  }

  /** Re-renders relative times and the edit buttons whose window has passed. */
  tick() {
    for (const t of this.list.querySelectorAll('time.comment-time')) this.fillTime(/** @type {HTMLTimeElement} */ (t));
    if (this.user) for (const e of this.items()) if (e.querySelector('[data-action="edit"]')) this.fillActions(e);
  }

  /**
   * Wires clicks and keys on the list and the form to `client`.
   * @param {CommentsClient} client
   */
  bind(client) {
    this.client = client;
    this.hydrate();
    this.list.addEventListener('click', (event) => {
      const target = /** @type {HTMLElement | null} */ (event.target);
      const control = /** @type {HTMLElement | null} */ (target && target.closest('[data-action]'));
      const li = /** @type {HTMLElement | null} */ (control && control.closest('.comment'));
      if (!control || !li) return;
      const id = li.dataset.id || '';
      const action = control.dataset.action;
      if (action === 'goto-parent') {
        const parent = this.item(li.dataset.replyTo || '');
        event.preventDefault();
        if (parent) {
          this.scrollIntoView(parent);
          parent.focus({ preventScroll: true });
        } else if (client.loadOlder()) {
          this.showError('');
        }
        return;
      }
      const signedIn = !!client.user;
      if (!signedIn && ['reply', 'react', 'pick', 'toggle-picker'].includes(action || '')) {
        this.inviteSignIn(li, action === 'reply' ? 'reply' : 'react');
        return;
      }
      switch (action) {
        case 'reply':
          this.setReplyTo(id);
          break;
        case 'toggle-picker': {
          const picker = /** @type {HTMLElement | null} */ (li.querySelector('.reaction-picker'));
          if (!picker) break;
          picker.hidden = !picker.hidden;
          control.setAttribute('aria-expanded', picker.hidden ? 'false' : 'true');
          if (!picker.hidden) /** @type {HTMLElement | null} */ (picker.querySelector('button'))?.focus();
          break;
        }
        case 'react':
        case 'pick': {
          const emoji = /** @type {Emoji} */ (control.dataset.emoji);
          const r = client.react(id, emoji);
          if (!r.ok && r.message) this.showError(r.message);
          if (action === 'pick') {
            const picker = /** @type {HTMLElement | null} */ (li.querySelector('.reaction-picker'));
            if (picker) picker.hidden = true;
            const add = /** @type {HTMLElement | null} */ (li.querySelector('.reaction-add'));
            if (add) {
              add.setAttribute('aria-expanded', 'false');
              add.focus();
            }
          }
          break;
        }
        case 'edit':
          this.startEdit(li);
          break;
        case 'edit-save':
          this.saveEdit(li);
          break;
        case 'edit-cancel':
          this.endEdit(li, true);
          break;
        case 'delete':
          this.confirmDelete(li);
          break;
        case 'delete-cancel':
          this.cancelDelete(li, true);
          break;
        case 'delete-confirm': {
          const r = client.remove(id);
          if (!r.ok) this.deleteFailed(id, r.message);
          else control.setAttribute('disabled', '');
          break;
        }
        default:
          break;
      }
    });
    this.list.addEventListener('keydown', (event) => {
      const target = /** @type {HTMLElement | null} */ (event.target);
      if (!target || !target.classList.contains('comment-edit-text')) {
        if (event.key === 'Escape' && target) {
          const li = /** @type {HTMLElement | null} */ (target.closest('.comment'));
          const picker = /** @type {HTMLElement | null} */ (li && li.querySelector('.reaction-picker:not([hidden])'));
          if (li && picker) {
            picker.hidden = true;
            /** @type {HTMLElement | null} */ (li.querySelector('.reaction-add'))?.focus();
          } else if (li && li.dataset.confirming === 'true') this.cancelDelete(li, true);
        }
        return;
      }
      const li = /** @type {HTMLElement | null} */ (target.closest('.comment'));
      if (!li) return;
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.saveEdit(li);
      } else if (event.key === 'Escape') {
        event.preventDefault();
        this.endEdit(li, true);
      }
    });
    if (this.form) {
      const form = this.form;
      form.addEventListener('submit', (event) => {
        event.preventDefault();
        const r = client.post(this.textarea ? this.textarea.value : '', this.replyTo);
        if (!r.ok && r.message) this.showError(r.message);
      });
      if (this.textarea) {
        const area = this.textarea;
        area.addEventListener('keydown', (event) => {
          // Enter sends, Shift+Enter breaks the line (and an IME composition keeps its Enter).
          if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
            event.preventDefault();
            form.requestSubmit();
          } else if (event.key === 'Escape' && this.replyTo) {
            event.preventDefault();
            this.setReplyTo(null);
          }
        });
        area.addEventListener('input', () => {
          if (area.value.trim()) client.noteTyping();
        });
      }
    }
    if (this.win) {
      let scheduled = false;
      this.win.addEventListener('scroll', () => {
        if (scheduled || this.unseen.length === 0) return;
        scheduled = true;
        this.win.requestAnimationFrame(() => {
          scheduled = false;
          this.updateMarker();
        });
      }, { passive: true });
      this.win.setInterval(() => this.tick(), 30_000);
    }
  }

  /** @param {HTMLElement} li */
  saveEdit(li) {
    if (!this.client) return;
    const area = /** @type {HTMLTextAreaElement | null} */ (li.querySelector('.comment-edit-text'));
    if (!area) return;
    const r = this.client.edit(li.dataset.id || '', area.value);
    if (!r.ok) {
      this.editDone(li.dataset.id || '', false, r.message);
      return;
    }
    if ('unchanged' in r && r.unchanged) {
      this.endEdit(li, true);
      return;
    }
    const save = /** @type {HTMLButtonElement | null} */ (li.querySelector('[data-action="edit-save"]'));
    if (save) save.disabled = true;
  }
}

const FALLBACK_STYLE = `
:where(#comments .comment.own) { text-align: right; margin-left: auto; }
:where(#comments .conn-state) { font-size: .85em; opacity: .8; }
:where(#comments .comment-error) { color: #b00020; }
:where(#comments .reaction.mine) { font-weight: bold; }
:where(#comments [hidden]) { display: none; }
:where(#comments .comments-new-marker) { position: fixed; bottom: 1rem; left: 50%; transform: translateX(-50%); }
`;

/**
 * Wires the module to the page's #comments element; returns the client (or null).
 * @param {Document} [doc]
 * @param {any} [win]
 */
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
  const view = new DomView(root, doc, { win });
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
    editWindowMs: view.editWindowMs,
  });
  view.bind(client);
  view.setCanPost(!!username, false);
  if (root.dataset.more === 'true') view.setMore(true);
  win.addEventListener('online', () => client.kick());
  win.addEventListener('pagehide', () => client.stop());
  win.addEventListener('pageshow', (/** @type {PageTransitionEvent} */ event) => {
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

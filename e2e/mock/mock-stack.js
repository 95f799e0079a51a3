// A small in-memory stand-in for the library pages/API and the comments-gateway WebSocket
// protocol (docs/protocol.md), enough to run the browser test and develop comments.js without
// the Rust services: `E2E_MODES=mock node --test tests/`. Not the product: the real e2e modes
// run the real binaries. Env: LIBRARY_PORT, GATEWAY_PORT (both required).
import http from 'node:http';
import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const LIBRARY_PORT = Number(process.env.LIBRARY_PORT);
const GATEWAY_PORT = Number(process.env.GATEWAY_PORT);
const GATEWAY_PUBLIC_URL = `ws://127.0.0.1:${GATEWAY_PORT}/ws`;

// ---------------------------------------------------------------- state
const users = new Map(); // username -> {username, fullname, password, role}
for (const [username, fullname, role] of [['JD', 'John Doe', 'user'], ['BadComedian', 'Евгений Баженов', 'user'], ['Admin', 'Администратор', 'admin']]) {
  users.set(username, { username, fullname, password: username, role });
}
const EMOJI = ['👍', '❤️', '😂', '😮', '😢', '🎉'];
const EDIT_WINDOW_MS = Number(process.env.EDIT_WINDOW_SECS || 900) * 1000;
const reactionsBy = new Map(); // comment id -> Map(emoji -> Set(user))
const counts = (id) => {
  const out = {};
  for (const [e, set] of reactionsBy.get(id) || []) if (set.size) out[e] = set.size;
  return out;
};
const view = (c) => ({ ...c, reactions: counts(c.id) });
const mineOf = (user, list) => {
  const mine = {};
  if (!user) return mine;
  for (const c of list) {
    const es = EMOJI.filter((e) => reactionsBy.get(c.id)?.get(e)?.has(user.username));
    if (es.length) mine[c.id] = es;
  }
  return mine;
};
const findComment = (room, id) => roomList(room).find((c) => c.id === id && !c.deleted);
const sessions = new Map(); // sid -> username
const tokens = new Map(); // token -> username
const rooms = new Map(); // room -> [{id, seq, room, author, text, createdAt}]
const byClientId = new Map(); // `${user}\n${clientId}` -> comment
const subscribers = new Map(); // room -> Set<conn>
const books = JSON.parse(readFileSync(path.join(REPO, 'data', 'demo', 'books.json'), 'utf8'));

const roomList = (room) => { if (!rooms.has(room)) rooms.set(room, []); return rooms.get(room); };
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

// ---------------------------------------------------------------- library
function sessionUser(req) {
  const m = /(?:^|;\s*)sid=([^;]+)/.exec(req.headers.cookie || '');
  return m ? users.get(sessions.get(m[1])) || null : null;
}

async function body(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  try { return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}'); } catch { return {}; }
}

function json(res, status, value, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(value));
}

function presenceOf(room) {
  const conns = subscribers.get(room) || new Set();
  const seen = new Map();
  let anon = 0;
  for (const c of conns) {
    if (c.user) { if (!seen.has(c.user.username)) seen.set(c.user.username, { id: c.user.username, name: c.user.fullname }); } else anon += 1;
  }
  return { readers: seen.size + anon, users: [...seen.values()].slice(0, 50) };
}

function commentsSection(room, user) {
  const all = roomList(room).filter((c) => !c.deleted);
  const list = all.slice(-50);
  const items = list.map((c) => {
    const parent = c.replyTo ? list.find((x) => x.id === c.replyTo) : null;
    const quote = c.replyTo ? `<blockquote class="comment-quote" data-parent-id="${esc(c.replyTo)}"><a class="comment-quote-link" href="#comment-${esc(c.replyTo)}">${parent ? `<span class="comment-quote-author">${esc(parent.author.name)}: </span><span class="comment-quote-text">${esc(parent.text.slice(0, 100))}</span>` : '<span class="comment-quote-text">an earlier comment</span>'}</a></blockquote>` : '';
    const rx = counts(c.id);
    const rxHtml = Object.keys(rx).length ? `<ul class="comment-reactions static">${EMOJI.filter((e) => rx[e]).map((e) => `<li class="reaction" data-emoji="${e}">${e} <span class="reaction-count">${rx[e]}</span></li>`).join('')}</ul>` : '';
    return `<li class="comment${user && c.author.id === user.username ? ' own' : ''}${c.replyTo ? ' reply' : ''}" id="comment-${esc(c.id)}" data-seq="${c.seq}" data-id="${esc(c.id)}" data-author="${esc(c.author.id)}"${c.replyTo ? ` data-reply-to="${esc(c.replyTo)}"` : ''}${c.editedAt ? ` data-edited-at="${esc(c.editedAt)}"` : ''} data-reactions="${esc(JSON.stringify(rx))}">
  ${quote}<div class="comment-meta"><a class="comment-author" href="/view/user/profile/${esc(c.author.id)}">${esc(c.author.name)}</a>
  <time class="comment-time" datetime="${esc(c.createdAt)}">${esc(c.createdAt)}</time>${c.editedAt ? ' <span class="comment-edited">edited</span>' : ''}</div>
  <p class="comment-text">${esc(c.text)}</p>${rxHtml}</li>`;
  }).join('\n');
  const last = list.length ? list[list.length - 1].seq : 0;
  const presence = presenceOf(room);
  return `<section class="comments" id="comments" data-room="${esc(room)}" data-gateway-url="${esc(GATEWAY_PUBLIC_URL)}"
  data-username="${user ? esc(user.username) : ''}" data-token-url="/api/v1/user/token" data-last-seq="${last}" data-available="true"
  data-more="${all.length > list.length ? 'true' : 'false'}">
  <h2>Comments</h2><p class="comments-status" role="status"></p>
  <p class="comments-presence"${presence.readers ? '' : ' hidden'}>${presence.readers} reading now</p>
  <ol class="comment-list">${items}</ol>
  ${list.length ? '' : '<p class="comments-empty">No comments yet.</p>'}
  <p class="comments-typing" aria-live="polite" hidden></p>
  ${user ? '<form class="comment-form" hidden><label for="comment-text" class="visually-hidden">Your comment</label><textarea id="comment-text" name="text" rows="3" required></textarea><button type="submit">Send</button></form>'
    : '<p class="comments-hint"><a href="/view/user/login">Sign in</a> to join the discussion.</p>'}
</section>`;
}

function page(res, title, content) {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<link rel="stylesheet" href="/static/css/style.css"></head>
<body><main class="wrap">${content}</main><script type="module" src="/static/js/comments.js"></script></body></html>`);
}

const library = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  const user = sessionUser(req);
  const p = url.pathname;
  if (p === '/healthz' || p === '/readyz') return json(res, 200, { status: 'ok' });
  if (p === '/static/css/style.css') {
    res.writeHead(200, { 'content-type': 'text/css; charset=utf-8', 'cache-control': 'no-store' });
    return res.end(readFileSync(path.join(REPO, 'library', 'static', 'css', 'style.css')));
  }
  if (p === '/static/js/comments.js') {
    res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-store' });
    return res.end(readFileSync(path.join(REPO, 'library', 'static', 'js', 'comments.js')));
  }
  if (p === '/view') return page(res, 'Catalogue', `<h1>Catalogue</h1>${commentsSection('index', user)}`);
  let m = /^\/view\/book\/(\d+)$/.exec(p);
  if (m) {
    const book = books.find((b) => String(b.id) === m[1]);
    if (!book) { res.writeHead(404); return res.end('not found'); }
    return page(res, book.title, `<h1>${esc(book.title)}</h1><p class="book-description">${esc(book.description || '')}</p>${commentsSection(m[1], user)}`);
  }
  m = /^\/api\/v1\/book\/(\d+)$/.exec(p);
  if (m) {
    const book = books.find((b) => String(b.id) === m[1]);
    return book ? json(res, 200, book) : json(res, 404, { error: { code: 'not_found', message: 'no such book' } });
  }
  if (p === '/api/v1/user/signup' && req.method === 'POST') {
    const b = await body(req);
    if (!b.username || users.has(b.username)) return json(res, 400, { error: { code: 'bad_request', message: 'taken' } });
    users.set(b.username, { username: b.username, fullname: b.fullname || b.username, password: b.password, role: 'user' });
    return json(res, 201, { message: 'signed up' });
  }
  if (p === '/api/v1/user/login' && req.method === 'POST') {
    const b = await body(req);
    const u = users.get(b.username);
    if (!u || u.password !== b.password) return json(res, 401, { error: { code: 'unauthorized', message: 'no' } });
    const sid = randomUUID();
    sessions.set(sid, u.username);
    return json(res, 201, { user: { username: u.username, fullname: u.fullname, email: '', created: '' } },
      { 'set-cookie': `sid=${sid}; Path=/; HttpOnly; SameSite=Lax` });
  }
  if (p === '/api/v1/user/token') {
    if (!user) return json(res, 401, { error: { code: 'unauthorized', message: 'sign in' } });
    const token = randomUUID();
    tokens.set(token, user.username);
    return json(res, 200, { token, expiresAt: new Date(Date.now() + 3600e3).toISOString() });
  }
  json(res, 404, { error: { code: 'not_found', message: 'no route' } });
});

// ---------------------------------------------------------------- gateway (minimal RFC 6455)
function frame(text) {
  const data = Buffer.from(text, 'utf8');
  let head;
  if (data.length < 126) head = Buffer.from([0x81, data.length]);
  else if (data.length < 65536) { head = Buffer.alloc(4); head[0] = 0x81; head[1] = 126; head.writeUInt16BE(data.length, 2); }
  else { head = Buffer.alloc(10); head[0] = 0x81; head[1] = 127; head.writeBigUInt64BE(BigInt(data.length), 2); }
  return Buffer.concat([head, data]);
}

class Conn {
  constructor(socket, user) {
    this.socket = socket;
    this.user = user;
    this.rooms = new Set();
    this.buf = Buffer.alloc(0);
    socket.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this.parse(); });
    socket.on('close', () => this.gone());
    socket.on('error', () => this.gone());
    this.send('welcome', { connectionId: randomUUID(), user: user ? { id: user.username, name: user.fullname, role: user.role || 'user' } : null, heartbeatMs: 15000 });
  }
  gone() {
    const rooms = [...this.rooms];
    for (const r of rooms) subscribers.get(r)?.delete(this);
    this.rooms.clear();
    for (const r of rooms) presenceChanged(r);
  }
  fail(code, message, ref) { this.send('error', { code, message }, ref); }
  send(type, payload, ref) {
    if (this.socket.destroyed) return;
    this.socket.write(frame(JSON.stringify(ref ? { type, ref, payload } : { type, payload })));
  }
  parse() {
    for (;;) {
      const b = this.buf;
      if (b.length < 2) return;
      const op = b[0] & 0x0f;
      let len = b[1] & 0x7f;
      let off = 2;
      if (len === 126) { if (b.length < 4) return; len = b.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (b.length < 10) return; len = Number(b.readBigUInt64BE(2)); off = 10; }
      const masked = (b[1] & 0x80) !== 0;
      const mask = masked ? b.subarray(off, off + 4) : null;
      if (masked) off += 4;
      if (b.length < off + len) return;
      const data = Buffer.from(b.subarray(off, off + len));
      if (mask) for (let i = 0; i < data.length; i += 1) data[i] ^= mask[i % 4];
      this.buf = b.subarray(off + len);
      if (op === 8) { this.socket.end(Buffer.from([0x88, 0])); this.gone(); return; }
      if (op === 9) { this.socket.write(Buffer.concat([Buffer.from([0x8a, data.length]), data])); continue; }
      if (op === 1) this.onText(data.toString('utf8'));
    }
  }
  onText(text) {
    let msg;
    try { msg = JSON.parse(text); } catch { return this.send('error', { code: 'bad_request', message: 'bad json' }); }
    const p = msg.payload || {};
    const ref = msg.ref;
    if (msg.type === 'ping') return this.send('pong', {}, ref);
    if (msg.type === 'subscribe') {
      const list = roomList(p.room).filter((c) => !c.deleted);
      if (!subscribers.has(p.room)) subscribers.set(p.room, new Set());
      subscribers.get(p.room).add(this);
      this.rooms.add(p.room);
      let comments;
      let truncated;
      if (p.since !== undefined) {
        const after = list.filter((c) => c.seq > p.since);
        comments = after.slice(0, 500);
        truncated = after.length > 500;
      } else {
        comments = list.slice(-(p.limit || 50));
        truncated = list.length > comments.length;
      }
      const payload = { room: p.room, comments: comments.map(view), truncated };
      if (this.user) payload.mine = mineOf(this.user, comments);
      this.send('subscribed', payload, ref);
      this.send('presence', { room: p.room, ...presenceOf(p.room) });
      presenceChanged(p.room, this);
      return undefined;
    }
    if (msg.type === 'unsubscribe') {
      subscribers.get(p.room)?.delete(this);
      this.rooms.delete(p.room);
      this.send('unsubscribed', { room: p.room }, ref);
      presenceChanged(p.room);
      return undefined;
    }
    if (msg.type === 'history') {
      const older = roomList(p.room).filter((c) => !c.deleted && c.seq < p.before);
      const comments = older.slice(-(p.limit || 50));
      const payload = { room: p.room, comments: comments.map(view), more: older.length > comments.length };
      if (this.user) payload.mine = mineOf(this.user, comments);
      return this.send('history', payload, ref);
    }
    if (['post', 'edit', 'react', 'typing', 'delete'].includes(msg.type)) {
      if (!this.user) return this.fail('unauthorized', 'sign in', ref);
      if (!this.rooms.has(p.room)) return this.fail('not_subscribed', 'subscribe first', ref);
    }
    if (msg.type === 'typing') {
      const now = Date.now();
      const key = `${this.user.username}\n${p.room}`;
      if (now - (typingAt.get(key) || 0) < 2000) return undefined;
      typingAt.set(key, now);
      for (const s of subscribers.get(p.room) || []) {
        if (s.user?.username !== this.user.username) s.send('typing', { room: p.room, user: { id: this.user.username, name: this.user.fullname } });
      }
      return undefined;
    }
    if (msg.type === 'post') {
      const t = String(p.text || '').trim();
      if (!t) return this.fail('bad_request', 'empty', ref);
      const key = `${this.user.username}\n${p.clientId}`;
      if (p.clientId && byClientId.has(key)) return this.send('ack', { comment: view(byClientId.get(key)) }, ref);
      let replyTo = null;
      if (p.replyTo != null) {
        const parent = findComment(p.room, p.replyTo);
        if (!parent) return this.fail('not_found', 'no such comment to reply to', ref);
        replyTo = parent.replyTo || parent.id;
        if (parent.replyTo && !findComment(p.room, parent.replyTo)) return this.fail('not_found', 'the thread is gone', ref);
      }
      const list = roomList(p.room);
      const c = {
        id: randomUUID(), seq: list.length + 1, room: p.room,
        author: { id: this.user.username, name: this.user.fullname }, text: t, createdAt: new Date().toISOString(),
        replyTo, editedAt: null,
      };
      list.push(c);
      if (p.clientId) byClientId.set(key, c);
      this.send('ack', { comment: view(c) }, ref);
      for (const s of subscribers.get(p.room) || []) s.send('comment', view(c));
      return undefined;
    }
    if (msg.type === 'edit') {
      const c = findComment(p.room, p.id);
      if (!c) return this.fail('not_found', 'no such comment', ref);
      if (c.author.id !== this.user.username) return this.fail('forbidden', 'only the author may edit', ref);
      if (Date.now() > Date.parse(c.createdAt) + EDIT_WINDOW_MS) return this.fail('forbidden', 'the edit window has passed', ref);
      const t = String(p.text || '').trim();
      if (!t) return this.fail('bad_request', 'empty', ref);
      c.text = t;
      c.editedAt = new Date().toISOString();
      this.send('ack', { comment: view(c) }, ref);
      for (const s of subscribers.get(p.room) || []) s.send('comment_edited', { room: p.room, comment: view(c) });
      return undefined;
    }
    if (msg.type === 'delete') {
      const c = findComment(p.room, p.id);
      if (!c) return this.fail('not_found', 'no such comment', ref);
      if (c.author.id !== this.user.username && this.user.role !== 'admin') return this.fail('forbidden', 'not yours', ref);
      c.deleted = true;
      this.send('ack', { id: c.id }, ref);
      for (const s of subscribers.get(p.room) || []) s.send('comment_deleted', { room: p.room, id: c.id });
      return undefined;
    }
    if (msg.type === 'react') {
      if (!EMOJI.includes(p.emoji)) return this.fail('bad_request', 'unknown emoji', ref);
      const c = findComment(p.room, p.id);
      if (!c) return this.fail('not_found', 'no such comment', ref);
      if (!reactionsBy.has(c.id)) reactionsBy.set(c.id, new Map());
      const byEmoji = reactionsBy.get(c.id);
      if (!byEmoji.has(p.emoji)) byEmoji.set(p.emoji, new Set());
      const set = byEmoji.get(p.emoji);
      const had = set.has(this.user.username);
      if (p.on) set.add(this.user.username); else set.delete(this.user.username);
      this.send('ack', { id: c.id, reactions: counts(c.id) }, ref);
      if (had !== !!p.on) for (const s of subscribers.get(p.room) || []) s.send('reactions', { room: p.room, id: c.id, reactions: counts(c.id) });
      return undefined;
    }
    return this.send('error', { code: 'bad_request', message: `unknown type ${msg.type}` }, ref);
  }
}

const typingAt = new Map();
const presenceTimers = new Map();
/** Tells the room's connections the new presence (at most once per second per room, like the gateway). */
function presenceChanged(room) {
  if (presenceTimers.has(room)) return;
  presenceTimers.set(room, setTimeout(() => {
    presenceTimers.delete(room);
    const now = presenceOf(room);
    for (const s of subscribers.get(room) || []) s.send('presence', { room, ...now });
  }, 300));
}

const CORS = { 'access-control-allow-origin': '*' };
const gateway = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/healthz' || url.pathname === '/readyz') return json(res, 200, { status: 'ok' });
  let m = /^\/rooms\/([A-Za-z0-9_-]{1,64})\/comments\/([^/]+)$/.exec(url.pathname);
  if (m) {
    const c = findComment(m[1], decodeURIComponent(m[2]));
    return c ? json(res, 200, { comment: view(c) }, CORS) : json(res, 404, { error: { code: 'not_found', message: 'no such comment' } }, CORS);
  }
  m = /^\/rooms\/([A-Za-z0-9_-]{1,64})\/presence$/.exec(url.pathname);
  if (m) return json(res, 200, presenceOf(m[1]), CORS);
  json(res, 404, { error: { code: 'not_found', message: 'no route' } });
});
gateway.on('upgrade', (req, socket) => {
  const url = new URL(req.url, 'http://x');
  const token = url.searchParams.get('token');
  let user = null;
  if (token) {
    const name = tokens.get(token);
    if (!name) { socket.end('HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n'); return; }
    user = users.get(name);
  }
  const accept = createHash('sha1').update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  // eslint-disable-next-line no-new
  new Conn(socket, user);
});

// demo comments, as the embedded gateway would load them
for (const c of JSON.parse(readFileSync(path.join(REPO, 'data', 'demo', 'comments.json'), 'utf8'))) {
  const list = roomList(c.room);
  list.push({ id: `demo-${c.room}-${list.length + 1}`, seq: list.length + 1, room: c.room, author: { id: c.authorId, name: c.authorName }, text: c.text, createdAt: c.createdAt, replyTo: null, editedAt: null });
}

library.listen(LIBRARY_PORT, '127.0.0.1');
gateway.listen(GATEWAY_PORT, '127.0.0.1');
console.log(`mock library on ${LIBRARY_PORT}, mock gateway on ${GATEWAY_PORT}`);
process.on('SIGTERM', () => process.exit(0));

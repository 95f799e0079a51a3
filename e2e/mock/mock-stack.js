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
const users = new Map(); // username -> {username, fullname, password}
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

function commentsSection(room, user) {
  const list = roomList(room).slice(-50);
  const items = list.map((c) => `<li class="comment${user && c.author.id === user.username ? ' own' : ''}" data-seq="${c.seq}" data-id="${esc(c.id)}" data-author="${esc(c.author.id)}">
  <div class="comment-meta"><a class="comment-author" href="/view/user/profile/${esc(c.author.id)}">${esc(c.author.name)}</a>
  <time class="comment-time" datetime="${esc(c.createdAt)}">${esc(c.createdAt)}</time></div>
  <p class="comment-text">${esc(c.text)}</p></li>`).join('\n');
  const last = list.length ? list[list.length - 1].seq : 0;
  return `<section class="comments" id="comments" data-room="${esc(room)}" data-gateway-url="${esc(GATEWAY_PUBLIC_URL)}"
  data-username="${user ? esc(user.username) : ''}" data-token-url="/api/v1/user/token" data-last-seq="${last}" data-available="true">
  <h2>Comments</h2><p class="comments-status" role="status"></p>
  <ol class="comment-list">${items}</ol>
  ${list.length ? '' : '<p class="comments-empty">No comments yet.</p>'}
  ${user ? '<form class="comment-form" hidden><textarea name="text" rows="3" required></textarea><button type="submit">Send</button></form>'
    : '<p class="comments-hint"><a href="/view/user/login">Sign in</a> to join the discussion.</p>'}
</section>`;
}

function page(res, title, content) {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>.comment-list{list-style:none;padding:0;display:flex;flex-direction:column;gap:.5em}
.comment{max-width:70%;border:1px solid #ccc;padding:.3em .6em}</style></head>
<body><main>${content}</main><script type="module" src="/static/js/comments.js"></script></body></html>`);
}

const library = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  const user = sessionUser(req);
  const p = url.pathname;
  if (p === '/healthz' || p === '/readyz') return json(res, 200, { status: 'ok' });
  if (p === '/static/js/comments.js') {
    res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-store' });
    return res.end(readFileSync(path.join(REPO, 'library', 'static', 'js', 'comments.js')));
  }
  if (p === '/view') return page(res, 'Catalogue', `<h1>Catalogue</h1>${commentsSection('index', user)}`);
  let m = /^\/view\/book\/(\d+)$/.exec(p);
  if (m) {
    const book = books.find((b) => String(b.id) === m[1]);
    if (!book) { res.writeHead(404); return res.end('not found'); }
    return page(res, book.title, `<h1>${esc(book.title)}</h1>${commentsSection(m[1], user)}`);
  }
  m = /^\/api\/v1\/book\/(\d+)$/.exec(p);
  if (m) {
    const book = books.find((b) => String(b.id) === m[1]);
    return book ? json(res, 200, book) : json(res, 404, { error: { code: 'not_found', message: 'no such book' } });
  }
  if (p === '/api/v1/user/signup' && req.method === 'POST') {
    const b = await body(req);
    if (!b.username || users.has(b.username)) return json(res, 400, { error: { code: 'bad_request', message: 'taken' } });
    users.set(b.username, { username: b.username, fullname: b.fullname || b.username, password: b.password });
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
    this.send('welcome', { connectionId: randomUUID(), user: user ? { id: user.username, name: user.fullname, role: 'user' } : null, heartbeatMs: 15000 });
  }
  gone() { for (const r of this.rooms) subscribers.get(r)?.delete(this); this.rooms.clear(); }
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
      const list = roomList(p.room);
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
      return this.send('subscribed', { room: p.room, comments, truncated }, ref);
    }
    if (msg.type === 'history') {
      const older = roomList(p.room).filter((c) => c.seq < p.before);
      const comments = older.slice(-(p.limit || 50));
      return this.send('history', { room: p.room, comments, more: older.length > comments.length }, ref);
    }
    if (msg.type === 'post') {
      if (!this.user) return this.send('error', { code: 'unauthorized', message: 'sign in' }, ref);
      if (!this.rooms.has(p.room)) return this.send('error', { code: 'not_subscribed', message: 'subscribe first' }, ref);
      const t = String(p.text || '').trim();
      if (!t) return this.send('error', { code: 'bad_request', message: 'empty' }, ref);
      const key = `${this.user.username}\n${p.clientId}`;
      if (p.clientId && byClientId.has(key)) return this.send('ack', { comment: byClientId.get(key) }, ref);
      const list = roomList(p.room);
      const c = {
        id: randomUUID(), seq: list.length + 1, room: p.room,
        author: { id: this.user.username, name: this.user.fullname }, text: t, createdAt: new Date().toISOString(),
      };
      list.push(c);
      if (p.clientId) byClientId.set(key, c);
      this.send('ack', { comment: c }, ref);
      for (const s of subscribers.get(p.room) || []) s.send('comment', c);
      return undefined;
    }
    return this.send('error', { code: 'bad_request', message: `unknown type ${msg.type}` }, ref);
  }
}

const gateway = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/healthz' || url.pathname === '/readyz') return json(res, 200, { status: 'ok' });
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
  list.push({ id: `demo-${c.room}-${list.length + 1}`, seq: list.length + 1, room: c.room, author: { id: c.authorId, name: c.authorName }, text: c.text, createdAt: c.createdAt });
}

library.listen(LIBRARY_PORT, '127.0.0.1');
gateway.listen(GATEWAY_PORT, '127.0.0.1');
console.log(`mock library on ${LIBRARY_PORT}, mock gateway on ${GATEWAY_PORT}`);
process.on('SIGTERM', () => process.exit(0));

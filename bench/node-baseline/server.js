// A minimal Node.js `ws` server speaking the subset of the gateway protocol the load tool uses
// (welcome, subscribe/subscribed, unsubscribe, post/ack/comment, ping/pong, error), with comments
// kept in memory. It is the baseline the Rust gateway is compared against on the same machine:
// same tool, same scenarios. Not a product: no persistence, no Redis, no rate limit.
//
//   PORT=3013 AUTH_TOKEN_SECRET=... node server.js
'use strict';

const http = require('http');
const crypto = require('crypto');
const { WebSocketServer } = require('ws');

const port = Number(process.env.PORT || 3013);
const host = process.env.HOST || '127.0.0.1';
const secret = process.env.AUTH_TOKEN_SECRET || 'dev-only-token-secret-change-me';
const heartbeatMs = Number(process.env.HEARTBEAT_MS || 15000);
const ROOM_RE = /^[A-Za-z0-9_-]{1,64}$/;
const KEEP = 200; // comments kept per room

function b64url(buf) {
  return buf.toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}

// HS256 verification, `exp` enforced; returns claims or null.
function verify(token) {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  const sig = b64url(crypto.createHmac('sha256', secret).update(parts[0] + '.' + parts[1]).digest());
  const a = Buffer.from(sig);
  const b = Buffer.from(parts[2]);
  if (a.length !== b.length || !crypto.timingSafeEqual(a, b)) return null;
  try {
    const header = JSON.parse(Buffer.from(parts[0], 'base64url').toString());
    if (header.alg !== 'HS256') return null;
    const claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString());
    if (typeof claims.exp !== 'number' || claims.exp * 1000 < Date.now()) return null;
    return claims;
  } catch {
    return null;
  }
}

const rooms = new Map(); // room -> {seq, comments: [], subs: Set<ws>}
function room(name) {
  let r = rooms.get(name);
  if (!r) {
    r = { seq: 0, comments: [], subs: new Set() };
    rooms.set(name, r);
  }
  return r;
}

let nextConn = 0;
function send(ws, obj) {
  ws.send(JSON.stringify(obj));
}
function error(ws, ref, code, message) {
  const m = { type: 'error', payload: { code, message } };
  if (ref !== undefined) m.ref = ref;
  send(ws, m);
}

const server = http.createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"status":"ok"}');
    return;
  }
  res.writeHead(404, { 'content-type': 'application/json' });
  res.end('{"error":{"code":"not_found","message":"no such route"}}');
});

const wss = new WebSocketServer({ noServer: true, maxPayload: 65536, perMessageDeflate: false });

server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname !== '/ws') {
    socket.destroy();
    return;
  }
  const token = url.searchParams.get('token');
  let user = null;
  if (token) {
    const claims = verify(token);
    if (!claims) {
      socket.end('HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    user = { id: claims.sub, name: claims.name, role: claims.role };
  }
  wss.handleUpgrade(req, socket, head, (ws) => connection(ws, user));
});

function connection(ws, user) {
  ws.user = user;
  ws.rooms = new Set();
  ws.alive = true;
  ws.on('pong', () => (ws.alive = true));
  send(ws, { type: 'welcome', payload: { connectionId: 'n' + nextConn++, user, heartbeatMs } });
  ws.on('message', (data, isBinary) => {
    ws.alive = true;
    if (isBinary) return error(ws, undefined, 'bad_request', 'binary frames are not supported');
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return error(ws, undefined, 'bad_request', 'malformed JSON');
    }
    const ref = msg.ref;
    const p = msg.payload || {};
    switch (msg.type) {
      case 'subscribe': {
        if (typeof p.room !== 'string' || !ROOM_RE.test(p.room)) return error(ws, ref, 'bad_request', 'bad room');
        const r = room(p.room);
        r.subs.add(ws);
        ws.rooms.add(p.room);
        let comments;
        if (typeof p.since === 'number') comments = r.comments.filter((c) => c.seq > p.since);
        else comments = r.comments.slice(-(p.limit || 50));
        const m = { type: 'subscribed', payload: { room: p.room, comments, truncated: false } };
        if (ref !== undefined) m.ref = ref;
        return send(ws, m);
      }
      case 'unsubscribe': {
        const r = rooms.get(p.room);
        if (r) r.subs.delete(ws);
        ws.rooms.delete(p.room);
        const m = { type: 'unsubscribed', payload: { room: p.room } };
        if (ref !== undefined) m.ref = ref;
        return send(ws, m);
      }
      case 'post': {
        if (!ws.user) return error(ws, ref, 'unauthorized', 'sign in to post');
        if (!ws.rooms.has(p.room)) return error(ws, ref, 'not_subscribed', 'subscribe first');
        const text = typeof p.text === 'string' ? p.text.trim() : '';
        if (!text) return error(ws, ref, 'bad_request', 'text must not be empty');
        if ([...text].length > 2000) return error(ws, ref, 'too_large', 'text too long');
        const r = room(p.room);
        const comment = {
          id: crypto.randomUUID(),
          seq: ++r.seq,
          room: p.room,
          author: { id: ws.user.id, name: ws.user.name },
          text,
          createdAt: new Date().toISOString(),
        };
        r.comments.push(comment);
        if (r.comments.length > KEEP) r.comments.shift();
        const ack = { type: 'ack', payload: { comment } };
        if (ref !== undefined) ack.ref = ref;
        send(ws, ack);
        // Serialise once, send the same string to every subscriber.
        const frame = JSON.stringify({ type: 'comment', payload: comment });
        for (const sub of r.subs) sub.send(frame);
        return;
      }
      case 'ping': {
        const m = { type: 'pong', payload: {} };
        if (ref !== undefined) m.ref = ref;
        return send(ws, m);
      }
      default:
        return error(ws, ref, 'bad_request', 'unknown type');
    }
  });
  ws.on('close', () => {
    for (const name of ws.rooms) {
      const r = rooms.get(name);
      if (r) r.subs.delete(ws);
    }
  });
}

const heartbeat = setInterval(() => {
  for (const ws of wss.clients) {
    if (!ws.alive) {
      ws.terminate();
      continue;
    }
    ws.alive = false;
    ws.ping();
  }
}, heartbeatMs);

server.listen(port, host, () => console.log(`node ws baseline on ${host}:${port} (pid ${process.pid})`));

function shutdown() {
  clearInterval(heartbeat);
  for (const ws of wss.clients) ws.close(1001, 'shutting down');
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

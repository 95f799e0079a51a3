// A minimal Bun server (uWebSockets underneath, native topic publish) speaking the subset of the
// gateway protocol the load tool uses, like ../node-baseline/server.js: welcome,
// subscribe/subscribed, unsubscribe, post/ack/comment, ping/pong, error; comments kept in memory.
// It is a baseline the Rust gateway is compared against on the same machine, not a product.
//
//   PORT=3014 AUTH_TOKEN_SECRET=... node_modules/@oven/bun-linux-x64/bin/bun server.js
'use strict';

const crypto = require('crypto');

const port = Number(process.env.PORT || 3014);
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

const rooms = new Map(); // room -> {seq, comments: []}; subscribers are uWS topics
function room(name) {
  let r = rooms.get(name);
  if (!r) {
    r = { seq: 0, comments: [] };
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

const server = Bun.serve({
  port,
  hostname: host,
  fetch(req, server) {
    const url = new URL(req.url);
    if (url.pathname === '/healthz') return Response.json({ status: 'ok' });
    if (url.pathname !== '/ws') {
      return Response.json({ error: { code: 'not_found', message: 'no such route' } }, { status: 404 });
    }
    const token = url.searchParams.get('token');
    let user = null;
    if (token) {
      const claims = verify(token);
      if (!claims) return new Response(null, { status: 401 });
      user = { id: claims.sub, name: claims.name, role: claims.role };
    }
    if (server.upgrade(req, { data: { user, rooms: new Set() } })) return undefined;
    return Response.json({ error: { code: 'bad_request', message: 'expected a WebSocket upgrade' } }, { status: 400 });
  },
  websocket: {
    maxPayloadLength: 65536,
    perMessageDeflate: false,
    // uWebSockets pings an idle socket and drops it when the idle timeout passes without a word.
    idleTimeout: Math.max(1, Math.round((2 * heartbeatMs) / 1000)),
    sendPings: true,
    open(ws) {
      send(ws, { type: 'welcome', payload: { connectionId: 'b' + nextConn++, user: ws.data.user, heartbeatMs } });
    },
    message(ws, data) {
      if (typeof data !== 'string') return error(ws, undefined, 'bad_request', 'binary frames are not supported');
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
          ws.subscribe(p.room);
          ws.data.rooms.add(p.room);
          let comments;
          if (typeof p.since === 'number') comments = r.comments.filter((c) => c.seq > p.since);
          else comments = r.comments.slice(-(p.limit || 50));
          const m = { type: 'subscribed', payload: { room: p.room, comments, truncated: false } };
          if (ref !== undefined) m.ref = ref;
          return send(ws, m);
        }
        case 'unsubscribe': {
          ws.unsubscribe(p.room);
          ws.data.rooms.delete(p.room);
          const m = { type: 'unsubscribed', payload: { room: p.room } };
          if (ref !== undefined) m.ref = ref;
          return send(ws, m);
        }
        case 'post': {
          const user = ws.data.user;
          if (!user) return error(ws, ref, 'unauthorized', 'sign in to post');
          if (!ws.data.rooms.has(p.room)) return error(ws, ref, 'not_subscribed', 'subscribe first');
          const text = typeof p.text === 'string' ? p.text.trim() : '';
          if (!text) return error(ws, ref, 'bad_request', 'text must not be empty');
          if ([...text].length > 2000) return error(ws, ref, 'too_large', 'text too long');
          const r = room(p.room);
          const comment = {
            id: crypto.randomUUID(),
            seq: ++r.seq,
            room: p.room,
            author: { id: user.id, name: user.name },
            text,
            createdAt: new Date().toISOString(),
          };
          r.comments.push(comment);
          if (r.comments.length > KEEP) r.comments.shift();
          const ack = { type: 'ack', payload: { comment } };
          if (ref !== undefined) ack.ref = ref;
          send(ws, ack);
          // Serialised once; uWebSockets writes the same frame to every subscriber of the topic.
          server.publish(p.room, JSON.stringify({ type: 'comment', payload: comment }));
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
    },
  },
});

console.log(`bun baseline on ${host}:${server.port} (pid ${process.pid})`);

function shutdown() {
  server.stop(true);
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

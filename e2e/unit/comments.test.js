// Unit tests of library/static/js/comments.js: the pure helpers and the protocol logic of
// CommentsClient against a scripted fake WebSocket (no browser, no server). Run: node --test unit/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../../library/static/js/comments.js', import.meta.url));
// The file is a browser module with no package.json around it: import its text as a data: URL.
const mod = await import(`data:text/javascript;base64,${Buffer.from(await readFile(SRC)).toString('base64')}`);
const { backoffDelay, socketUrl, parseSeq, checkText, insertionIndex, formatTime, CommentsClient } = mod;

test('backoffDelay grows exponentially with jitter and caps at 10 s', () => {
  assert.equal(backoffDelay(0, () => 0), 250);
  assert.equal(backoffDelay(0, () => 1), 500);
  assert.equal(backoffDelay(3, () => 1), 4000);
  for (let a = 0; a < 40; a += 1) {
    const lo = backoffDelay(a, () => 0);
    const hi = backoffDelay(a, () => 0.999999);
    assert.ok(lo >= 250 && hi <= 10_000, `attempt ${a}: ${lo}..${hi}`);
    assert.ok(lo <= hi);
  }
  assert.equal(backoffDelay(50, () => 1), 10_000);
  assert.equal(backoffDelay(50, () => 0), 5_000);
});

test('socketUrl adds the token as a query parameter', () => {
  assert.equal(socketUrl('ws://h:3003/ws', null), 'ws://h:3003/ws');
  assert.equal(socketUrl('ws://h:3003/ws', 'a.b+c/d'), 'ws://h:3003/ws?token=a.b%2Bc%2Fd');
  assert.equal(socketUrl('ws://h/ws?x=1', 't'), 'ws://h/ws?x=1&token=t');
});

test('parseSeq accepts positive integers only', () => {
  assert.equal(parseSeq('12'), 12);
  assert.equal(parseSeq(' 7 '), 7);
  assert.equal(parseSeq(3), 3);
  for (const bad of ['', '0', '-1', '1.5', 'abc', undefined, null, 0, 1.5, '1e3']) assert.equal(parseSeq(bad), null, String(bad));
});

test('checkText trims and counts code points like the gateway', () => {
  assert.deepEqual(checkText('  hi  '), { ok: true, text: 'hi', message: '' });
  assert.equal(checkText('   ').ok, false);
  assert.equal(checkText('😀'.repeat(2000)).ok, true); // 4000 UTF-16 units, 2000 code points
  assert.equal(checkText('a'.repeat(2001)).ok, false);
});

test('insertionIndex keeps seq order', () => {
  assert.equal(insertionIndex([], 5), 0);
  assert.equal(insertionIndex([1, 2, 4], 3), 2);
  assert.equal(insertionIndex([1, 2, 4], 9), 3);
  assert.equal(insertionIndex([1, 2, 4], 0), 0);
});

test('formatTime falls back to the raw value', () => {
  assert.equal(formatTime('nonsense'), 'nonsense');
  assert.equal(formatTime('2024-02-02T09:42:10.250Z'), '2024-02-02 09:42 UTC');
  assert.equal(formatTime('2024-02-02T23:59:59.999+03:00'), '2024-02-02 20:59 UTC');
});

// ---------------------------------------------------------------- fakes

class FakeTimers {
  constructor() { this.now = 0; this.seq = 0; this.items = new Map(); }
  setTimeout = (f, ms) => { const id = ++this.seq; this.items.set(id, { f, at: this.now + ms, every: 0 }); return id; };
  setInterval = (f, ms) => { const id = ++this.seq; this.items.set(id, { f, at: this.now + ms, every: ms }); return id; };
  clearTimeout = (id) => { this.items.delete(id); };
  clearInterval = (id) => { this.items.delete(id); };
  pendingDelays() { return [...this.items.values()].filter((t) => !t.every).map((t) => t.at - this.now); }
  async advance(ms) {
    const end = this.now + ms;
    for (;;) {
      let next = null;
      for (const [id, t] of this.items) if (t.at <= end && (!next || t.at < next[1].at)) next = [id, t];
      if (!next) break;
      const [id, t] = next;
      this.now = t.at;
      if (t.every) t.at += t.every; else this.items.delete(id);
      t.f();
      await flush();
    }
    this.now = end;
  }
}

const flush = () => new Promise((r) => setImmediate(r));

function makeEnv({ username = 'JD', tokenStatus = 200, initial = [] } = {}) {
  const sockets = [];
  class FakeSocket {
    constructor(url) { this.url = url; this.readyState = 1; this.sent = []; sockets.push(this); }
    send(s) { if (this.readyState !== 1) throw new Error('closed'); this.sent.push(JSON.parse(s)); }
    close() { if (this.readyState === 3) return; this.readyState = 3; this.onclose?.({ code: 1000 }); }
    // server side helpers
    emit(type, payload, ref) { this.onmessage?.({ data: JSON.stringify(ref ? { type, ref, payload } : { type, payload }) }); }
    drop() { this.readyState = 3; this.onclose?.({ code: 1006 }); }
    last(type) { return [...this.sent].reverse().find((m) => m.type === type); }
  }
  const events = [];
  const view = {
    comments: [...initial],
    initialComments: () => initial.map((c) => ({ id: c.id, seq: c.seq })),
    setState: (s) => events.push(['state', s]),
    addComment: (c, own) => { view.comments.push({ ...c, own }); },
    removeComment: (id) => { view.comments = view.comments.filter((c) => c.id !== id); },
    showNotice: (t) => events.push(['notice', t]),
    showError: (t) => events.push(['error', t]),
    clearError: () => events.push(['clearError']),
    setSignedOut: () => events.push(['signedOut']),
    setCanPost: (can) => events.push(['canPost', can]),
    setSending: (s) => events.push(['sending', s]),
    postDone: (t) => events.push(['postDone', t]),
  };
  const timers = new FakeTimers();
  let tokenCalls = 0;
  let ids = 0;
  const client = new CommentsClient({
    room: '1',
    gatewayUrl: 'ws://gw/ws',
    tokenUrl: '/api/v1/user/token',
    username,
    view,
    WebSocket: FakeSocket,
    fetch: async (url, opts) => {
      tokenCalls += 1;
      assert.equal(url, '/api/v1/user/token');
      assert.equal(opts.credentials, 'same-origin');
      if (tokenStatus === 'down') throw new TypeError('network');
      return { ok: tokenStatus === 200, status: tokenStatus, json: async () => ({ token: `tok${tokenCalls}`, expiresAt: 'x' }) };
    },
    ...timers,
    now: () => timers.now,
    random: () => 0.5,
    uuid: () => `uuid-${++ids}`,
  });
  return { client, sockets, view, events, timers, tokenCalls: () => tokenCalls };
}

const comment = (seq, author = 'BadComedian', room = '1') => ({
  id: `id${seq}`, seq, room, author: { id: author, name: author }, text: `text ${seq}`, createdAt: '2024-02-02T09:42:10.250Z',
});

async function connectLive(env, { user = { id: 'JD', name: 'John Doe', role: 'user' }, backlog = [] } = {}) {
  env.client.start();
  await flush();
  const ws = env.sockets.at(-1);
  ws.emit('welcome', { connectionId: 'c', user, heartbeatMs: 15000 });
  const sub = ws.last('subscribe');
  ws.emit('subscribed', { room: '1', comments: backlog, truncated: false }, sub.ref);
  return { ws, sub };
}

// ---------------------------------------------------------------- protocol

test('connects with the token, subscribes since the highest seq on the page, goes live', async () => {
  const env = makeEnv({ initial: [comment(1), comment(2)] });
  const { ws, sub } = await connectLive(env, { backlog: [comment(3)] });
  assert.equal(ws.url, 'ws://gw/ws?token=tok1');
  assert.deepEqual(sub.payload, { room: '1', since: 2 });
  assert.equal(env.client.state, 'live');
  assert.deepEqual(env.view.comments.map((c) => c.seq), [1, 2, 3]);
  assert.ok(env.events.some((e) => e[0] === 'canPost' && e[1] === true));
});

test('subscribes without since when the page has no comments', async () => {
  const env = makeEnv();
  const { sub } = await connectLive(env);
  assert.deepEqual(sub.payload, { room: '1' });
});

test('signed out (401): anonymous socket, read-only', async () => {
  const env = makeEnv({ tokenStatus: 401 });
  env.client.start();
  await flush();
  const ws = env.sockets[0];
  assert.equal(ws.url, 'ws://gw/ws');
  assert.ok(env.events.some((e) => e[0] === 'signedOut'));
  ws.emit('welcome', { connectionId: 'c', user: null, heartbeatMs: 15000 });
  ws.emit('subscribed', { room: '1', comments: [], truncated: false }, ws.last('subscribe').ref);
  assert.equal(env.client.canPost, false);
  assert.equal(env.client.post('hello').ok, false);
  assert.equal(ws.last('post'), undefined);
});

test('no username on the page: no token request at all', async () => {
  const env = makeEnv({ username: '' });
  env.client.start();
  await flush();
  assert.equal(env.tokenCalls(), 0);
  assert.equal(env.sockets[0].url, 'ws://gw/ws');
});

test('dedupes by id, ignores other rooms, marks own comments', async () => {
  const env = makeEnv({ initial: [comment(1)] });
  const { ws } = await connectLive(env);
  ws.emit('comment', comment(1));
  ws.emit('comment', comment(2, 'JD'));
  ws.emit('comment', comment(2, 'JD'));
  ws.emit('comment', comment(7, 'JD', 'index'));
  assert.deepEqual(env.view.comments.map((c) => [c.seq, !!c.own]), [[1, false], [2, true]]);
  ws.emit('comment_deleted', { room: '1', id: 'id2' });
  assert.deepEqual(env.view.comments.map((c) => c.seq), [1]);
  ws.emit('comment', comment(2, 'JD')); // a deleted comment never comes back
  assert.deepEqual(env.view.comments.map((c) => c.seq), [1]);
});

test('post: clientId, ack, form state; repeated clientId only on retry of the same text', async () => {
  const env = makeEnv();
  const { ws } = await connectLive(env);
  assert.equal(env.client.post('  hello  ').ok, true);
  const p = ws.last('post');
  assert.deepEqual(p.payload, { room: '1', text: 'hello', clientId: 'uuid-1' });
  assert.ok(env.events.some((e) => e[0] === 'sending' && e[1] === true));
  assert.equal(env.client.post('second').ok, false, 'one post at a time');
  ws.emit('ack', { comment: { ...comment(1, 'JD'), text: 'hello' } }, p.ref);
  assert.deepEqual(env.events.slice(-2), [['sending', false], ['postDone', 'hello']]);
  assert.equal(env.view.comments.length, 1);
  assert.equal(env.view.comments[0].own, true);
  ws.emit('comment', { ...comment(1, 'JD'), text: 'hello' }); // own broadcast after the ack
  assert.equal(env.view.comments.length, 1);

  // refused post keeps its clientId for a retry of the same text, not for a new text
  env.client.post('again');
  const p2 = ws.last('post');
  ws.emit('error', { code: 'rate_limited', message: 'slow down' }, p2.ref);
  assert.deepEqual(env.events.at(-1), ['error', 'slow down']);
  env.client.post('again');
  assert.equal(ws.last('post').payload.clientId, p2.payload.clientId);
  ws.emit('error', { code: 'unavailable', message: 'storage' }, ws.last('post').ref);
  env.client.post('different');
  assert.notEqual(ws.last('post').payload.clientId, p2.payload.clientId);
});

test('validation errors never reach the socket', async () => {
  const env = makeEnv();
  const { ws } = await connectLive(env);
  assert.equal(env.client.post('   ').ok, false);
  assert.equal(env.client.post('x'.repeat(2001)).ok, false);
  assert.equal(ws.last('post'), undefined);
});

test('drop: offline, backoff, new token, resubscribe since last seq, resend un-acked post with the same clientId', async () => {
  const env = makeEnv({ initial: [comment(1)] });
  const { ws } = await connectLive(env, { backlog: [comment(2)] });
  env.client.post('during drop');
  const sent = ws.last('post');
  ws.drop();
  assert.equal(env.client.state, 'offline');
  assert.equal(env.client.socket, null);
  assert.deepEqual(env.timers.pendingDelays(), [375]); // attempt 0, jitter 0.5

  await env.timers.advance(375);
  assert.equal(env.sockets.length, 2);
  const ws2 = env.sockets[1];
  assert.equal(ws2.url, 'ws://gw/ws?token=tok2', 'token fetched again');
  assert.equal(env.client.state, 'connecting');
  assert.equal(ws2.last('post'), undefined, 'not before subscribed');
  ws2.emit('welcome', { connectionId: 'c2', user: { id: 'JD', name: 'John Doe', role: 'user' }, heartbeatMs: 15000 });
  const sub = ws2.last('subscribe');
  assert.deepEqual(sub.payload, { room: '1', since: 2 });
  // more than one page missed: truncated -> subscribe again from the last one
  ws2.emit('subscribed', { room: '1', comments: [comment(3), comment(4)], truncated: true }, sub.ref);
  const sub2 = ws2.last('subscribe');
  assert.notEqual(sub2.ref, sub.ref);
  assert.deepEqual(sub2.payload, { room: '1', since: 4 });
  assert.equal(env.client.state, 'connecting');
  ws2.emit('subscribed', { room: '1', comments: [comment(4), comment(5)], truncated: false }, sub2.ref);
  assert.equal(env.client.state, 'live');
  assert.deepEqual(env.view.comments.map((c) => c.seq), [1, 2, 3, 4, 5]);
  const resent = ws2.last('post');
  assert.equal(resent.payload.clientId, sent.payload.clientId);
  assert.equal(resent.payload.text, 'during drop');
});

test('backoff grows while the library is unreachable and resets once live', async () => {
  const env = makeEnv({ tokenStatus: 'down' });
  env.client.start();
  await flush();
  const delays = [];
  for (let i = 0; i < 8; i += 1) {
    const [d] = env.timers.pendingDelays();
    delays.push(d);
    await env.timers.advance(d);
  }
  assert.deepEqual(delays, [375, 750, 1500, 3000, 6000, 7500, 7500, 7500]);
  assert.equal(env.sockets.length, 0);
  assert.equal(env.client.state, 'offline');
  env.client.stop();
});

test('keepalive: app ping every 25 s; a silent connection is dropped and reconnected', async () => {
  const env = makeEnv();
  const { ws } = await connectLive(env);
  await env.timers.advance(25_000);
  assert.deepEqual(ws.last('ping'), { type: 'ping', payload: {} });
  ws.emit('pong', {});
  await env.timers.advance(25_000); // pong came 25 s ago: fine
  assert.equal(env.client.socket, ws);
  await env.timers.advance(50_000); // silence
  assert.notEqual(env.client.socket, ws);
});

test('an unanswered post drops the connection so the reconnect resends it', async () => {
  const env = makeEnv();
  const { ws } = await connectLive(env);
  env.client.post('lost');
  await env.timers.advance(10_000);
  assert.equal(ws.readyState, 3);
  assert.equal(env.client.state, 'offline');
});

test('notice and unsolicited errors reach the view; not_subscribed resubscribes and resends', async () => {
  const env = makeEnv();
  const { ws } = await connectLive(env);
  ws.emit('notice', { text: 'maintenance at 5', from: 'admin' });
  ws.emit('notice', { text: 'other room', from: 'admin', room: '2' });
  ws.emit('error', { code: 'bad_request', message: 'oops' });
  assert.deepEqual(env.events.filter((e) => e[0] === 'notice' || e[0] === 'error'),
    [['notice', 'maintenance at 5'], ['error', 'oops']]);
  env.client.post('x');
  const p = ws.last('post');
  ws.emit('error', { code: 'not_subscribed', message: 'subscribe first' }, p.ref);
  const sub = ws.last('subscribe');
  ws.emit('subscribed', { room: '1', comments: [], truncated: false }, sub.ref);
  assert.equal(ws.last('post').payload.clientId, p.payload.clientId);
  assert.equal(ws.sent.filter((m) => m.type === 'post').length, 2);
});

test('older comments: history before the lowest seq, more=false hides the button', async () => {
  const env = makeEnv({ initial: [comment(51), comment(52)] });
  const more = [];
  env.view.setMore = (m) => more.push(m);
  env.view.lowestSeq = () => Math.min(...env.view.comments.map((c) => c.seq));
  const { ws } = await connectLive(env);
  assert.equal(env.client.loadOlder(), true);
  assert.equal(env.client.loadOlder(), false, 'one request at a time');
  const h = ws.last('history');
  assert.deepEqual(h.payload, { room: '1', before: 51, limit: 50 });
  ws.emit('history', { room: '1', comments: [comment(1), comment(50)], more: false }, h.ref);
  assert.deepEqual(env.view.comments.map((c) => c.seq), [51, 52, 1, 50]); // the DOM view sorts by seq
  assert.deepEqual(more, [false]);
  assert.equal(env.client.lastSeq, 52, 'history never moves since backwards');
});

test('subscribe without since: truncated means older comments exist', async () => {
  const env = makeEnv();
  const more = [];
  env.view.setMore = (m) => more.push(m);
  await connectLive(env, { backlog: [comment(60)] });
  const ws = env.sockets[0];
  ws.emit('subscribed', { room: '1', comments: [comment(60)], truncated: true }, ws.last('subscribe').ref);
  assert.deepEqual(more, [true]);
});

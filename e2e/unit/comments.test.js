// Unit tests of library/static/js/comments.js: the pure helpers and the protocol logic of
// CommentsClient against a scripted fake WebSocket (no browser, no server). Run: node --test unit/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../../library/static/js/comments.js', import.meta.url));
// The file is a browser module with no package.json around it: import its text as a data: URL.
const mod = await import(`data:text/javascript;base64,${Buffer.from(await readFile(SRC)).toString('base64')}`);
const {
  backoffDelay, socketUrl, parseSeq, checkText, insertionIndex, formatTime, CommentsClient,
  httpBaseFromWs, formatPresence, formatTyping, formatRelative, formatExact, quoteText, canEdit,
  cleanReactions, normalizeComment, staleIds, friendlyError, joinNames, TYPERS_MAX,
} = mod;

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

function makeEnv({ username = 'JD', tokenStatus = 200, initial = [], lastSeq = 0, parents = {} } = {}) {
  const sockets = [];
  class FakeSocket {
    constructor(url) { this.url = url; this.readyState = 1; this.sent = []; sockets.push(this); }
    send(s) { if (this.readyState !== 1) throw new Error('closed'); this.sent.push(JSON.parse(s)); }
    close() { if (this.readyState === 3) return; this.readyState = 3; this.onclose?.({ code: 1000 }); }
    // server side helpers
    emit(type, payload, ref) { this.onmessage?.({ data: JSON.stringify(ref ? { type, ref, payload } : { type, payload }) }); }
    drop() { this.readyState = 3; this.onclose?.({ code: 1006 }); }
    last(type) { return [...this.sent].reverse().find((m) => m.type === type); }
    all(type) { return this.sent.filter((m) => m.type === type); }
  }
  const events = [];
  const view = {
    comments: [...initial],
    initialComments: () => initial.map((c) => ({ ...c })),
    initialLastSeq: () => lastSeq,
    setState: (s) => events.push(['state', s]),
    addComment: (c, own, mine, fresh) => { view.comments.push({ ...c, own, mine: [...mine], fresh }); },
    updateComment: (c, mine) => {
      const i = view.comments.findIndex((x) => x.id === c.id);
      if (i >= 0) view.comments[i] = { ...view.comments[i], ...c, mine: [...mine] };
      events.push(['update', c.id]);
    },
    removeComment: (id) => { view.comments = view.comments.filter((c) => c.id !== id); events.push(['remove', id]); },
    setUser: (u) => events.push(['user', u && u.id]),
    setPresence: (t) => events.push(['presence', t]),
    setTyping: (t) => events.push(['typing', t]),
    showNotice: (t) => events.push(['notice', t]),
    showError: (t) => events.push(['error', t]),
    clearError: () => events.push(['clearError']),
    setSignedOut: () => events.push(['signedOut']),
    setCanPost: (can) => events.push(['canPost', can]),
    setSending: (s) => events.push(['sending', s]),
    postDone: (t) => events.push(['postDone', t]),
    editDone: (id, ok, message) => events.push(['editDone', id, ok, message]),
    deleteFailed: (id, message) => events.push(['deleteFailed', id, message]),
  };
  const timers = new FakeTimers();
  let tokenCalls = 0;
  const fetches = [];
  let ids = 0;
  const client = new CommentsClient({
    room: '1',
    gatewayUrl: 'ws://gw/ws',
    tokenUrl: '/api/v1/user/token',
    username,
    view,
    WebSocket: FakeSocket,
    fetch: async (url, opts) => {
      if (url !== '/api/v1/user/token') {
        fetches.push([url, opts]);
        const id = decodeURIComponent(url.split('/').pop());
        const answer = parents[id];
        if (answer === 'down') throw new TypeError('network');
        if (!answer) return { ok: false, status: 404, json: async () => ({ error: { code: 'not_found', message: 'no' } }) };
        return { ok: true, status: 200, json: async () => ({ comment: answer }) };
      }
      tokenCalls += 1;
      assert.equal(opts.credentials, 'same-origin');
      if (tokenStatus === 'down') throw new TypeError('network');
      return { ok: tokenStatus === 200, status: tokenStatus, json: async () => ({ token: `tok${tokenCalls}`, expiresAt: 'x' }) };
    },
    ...timers,
    now: () => timers.now,
    random: () => 0.5,
    uuid: () => `uuid-${++ids}`,
  });
  return { client, sockets, view, events, timers, fetches, tokenCalls: () => tokenCalls };
}

const comment = (seq, author = 'BadComedian', room = '1', extra = {}) => ({
  id: `id${seq}`, seq, room, author: { id: author, name: author }, text: `text ${seq}`, createdAt: '2024-02-02T09:42:10.250Z',
  replyTo: null, editedAt: null, reactions: {}, ...extra,
});

async function connectLive(env, { user = { id: 'JD', name: 'John Doe', role: 'user' }, backlog = [], mine } = {}) {
  env.client.start();
  await flush();
  const ws = env.sockets.at(-1);
  ws.emit('welcome', { connectionId: 'c', user, heartbeatMs: 15000 });
  const sub = ws.last('subscribe');
  ws.emit('subscribed', { room: '1', comments: backlog, truncated: false, ...(mine ? { mine } : {}) }, sub.ref);
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
  assert.deepEqual(env.events.at(-1), ['error', 'Slow down a little, then try again.']);
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

// ---------------------------------------------------------------- discussions (v3): helpers

test('httpBaseFromWs derives the gateway HTTP base from GATEWAY_PUBLIC_URL', () => {
  assert.equal(httpBaseFromWs('ws://127.0.0.1:3003/ws'), 'http://127.0.0.1:3003');
  assert.equal(httpBaseFromWs('wss://example.org/chat/ws'), 'https://example.org/chat');
  assert.equal(httpBaseFromWs('wss://example.org/ws/?x=1'), 'https://example.org');
  assert.equal(httpBaseFromWs('ws://h:1/other'), 'http://h:1/other');
  assert.equal(httpBaseFromWs('not a url'), null);
  assert.equal(httpBaseFromWs('ftp://h/ws'), null);
});

test('formatPresence: names, guests, others, nobody', () => {
  const u = (id, name = id) => ({ id, name });
  assert.equal(formatPresence({ readers: 3, users: [u('JD', 'John Doe'), u('Admin', 'Administrator')] }),
    '3 reading now: John Doe, Administrator and 1 guest');
  assert.equal(formatPresence({ readers: 1, users: [u('JD', 'John Doe')] }), '1 reading now: John Doe');
  assert.equal(formatPresence({ readers: 2, users: [] }), '2 reading now: 2 guests');
  assert.equal(formatPresence({ readers: 0, users: [] }), '');
  assert.equal(formatPresence({ readers: 'x' }), '');
  const seven = Array.from({ length: 7 }, (_, i) => u(`u${i}`, `U${i}`));
  assert.equal(formatPresence({ readers: 9, users: seven }), '9 reading now: U0, U1, U2, U3, U4, 2 others and 2 guests');
  const fifty = Array.from({ length: 50 }, (_, i) => u(`u${i}`, ''));
  assert.equal(formatPresence({ readers: 60, users: fifty }), '60 reading now: u0, u1, u2, u3, u4 and 55 others');
  assert.equal(joinNames(['a']), 'a');
});

test('formatTyping', () => {
  assert.equal(formatTyping([]), '');
  assert.equal(formatTyping(['John Doe']), 'John Doe is typing…');
  assert.equal(formatTyping(['A', 'B']), 'A and B are typing…');
  assert.equal(formatTyping(['A', 'B', 'C']), 'A, B and C are typing…');
  assert.equal(formatTyping(['A', 'B', 'C', 'D', 'E']), 'A, B and 3 others are typing…');
});

test('times: relative for the last day, exact in the reader\'s time zone', () => {
  const t = '2024-02-02T09:42:10.250Z';
  const at = (iso) => Date.parse(iso);
  assert.equal(formatRelative(t, at('2024-02-02T09:42:40Z')), 'just now');
  assert.equal(formatRelative(t, at('2024-02-02T09:47:30Z')), '5 min ago');
  assert.equal(formatRelative(t, at('2024-02-02T12:43:00Z')), '3 h ago');
  const opts = { timeZone: 'Asia/Tokyo', locale: 'en-GB' };
  assert.equal(formatRelative(t, at('2024-02-05T00:00:00Z'), opts), '2 Feb 2024, 18:42');
  assert.match(formatExact(t, opts), /Friday,? 2 February 2024.*18:42:10/);
  assert.match(formatExact(t, { timeZone: 'America/New_York', locale: 'en-US' }), /February 2, 2024.*4:42:10\sAM EST/);
  assert.equal(formatRelative('nonsense', 0), 'nonsense');
  assert.equal(formatExact('nonsense'), 'nonsense');
});

test('quoteText, canEdit, cleanReactions, normalizeComment', () => {
  assert.equal(quoteText('  a\n\n b '), 'a b');
  const q = quoteText('😀'.repeat(150));
  assert.equal([...q].length, 100);
  assert.ok(q.endsWith('…'));
  const c = comment(1, 'JD');
  const created = Date.parse(c.createdAt);
  assert.equal(canEdit(c, 'JD', created + 899_000), true);
  assert.equal(canEdit(c, 'JD', created + 900_000), false);
  assert.equal(canEdit(c, 'BadComedian', created), false);
  assert.equal(canEdit(c, '', created), false);
  assert.deepEqual(cleanReactions({ '👍': 2, '🙈': 3, '🎉': 0, '❤️': 1.5, '😂': '2' }), { '👍': 2 });
  assert.deepEqual(cleanReactions(null), {});
  const pre = normalizeComment({ id: 'a', seq: 3, room: '1', author: { id: 'x', name: 'X' }, text: 't', createdAt: 'c' }, '1');
  assert.deepEqual([pre.replyTo, pre.editedAt, pre.reactions], [null, null, {}], 'pre-v3 comments read as null, null, {}');
  assert.equal(normalizeComment({ ...pre, room: '2' }, '1'), null);
  assert.equal(normalizeComment({ ...pre, id: '' }, '1'), null);
});

test('staleIds: what a subscribe with limit proves deleted', () => {
  const shown = [1, 2, 3, 4].map((seq) => ({ id: `id${seq}`, seq }));
  const answer = (seqs) => seqs.map((seq) => ({ id: `id${seq}`, seq }));
  assert.deepEqual(staleIds(shown, answer([1, 3, 4]), false), ['id2']);
  assert.deepEqual(staleIds(shown, answer([3, 4, 5]), true), [], 'older than the answer: unknown, kept');
  assert.deepEqual(staleIds(shown, answer([2, 4]), true), ['id3']);
  assert.deepEqual(staleIds(shown, [], false), ['id1', 'id2', 'id3', 'id4']);
});

test('friendlyError words the gateway codes per request', () => {
  assert.match(friendlyError('forbidden', 'x', 'edit'), /edit window/);
  assert.match(friendlyError('forbidden', 'x', 'delete'), /own comments/);
  assert.equal(friendlyError('bad_request', 'weird'), 'weird');
});

// ---------------------------------------------------------------- discussions (v3): protocol

test('reply: post carries replyTo; another parent gets a fresh clientId', async () => {
  const env = makeEnv();
  const { ws } = await connectLive(env, { backlog: [comment(1)] });
  assert.equal(env.client.post('agreed', 'id1').ok, true);
  const p = ws.last('post');
  assert.deepEqual(p.payload, { room: '1', text: 'agreed', clientId: 'uuid-1', replyTo: 'id1' });
  ws.emit('error', { code: 'not_found', message: 'no such comment' }, p.ref);
  assert.deepEqual(env.events.at(-1), ['error', 'The comment you reply to was deleted.']);
  env.client.post('agreed', 'id1');
  assert.equal(ws.last('post').payload.clientId, 'uuid-1', 'same text, same parent: same clientId');
  ws.emit('error', { code: 'unavailable', message: 'x' }, ws.last('post').ref);
  env.client.post('agreed');
  assert.equal(ws.last('post').payload.clientId, 'uuid-2', 'not a reply any more: new clientId');
  assert.equal(ws.last('post').payload.replyTo, undefined);
  ws.emit('ack', { comment: comment(2, 'JD', '1', { text: 'agreed', replyTo: 'id1' }) }, ws.last('post').ref);
  assert.equal(env.view.comments.at(-1).replyTo, 'id1');
});

test('edit: request, ack updates text and editedAt, refusal reaches the view, live comment_edited', async () => {
  const env = makeEnv();
  const { ws } = await connectLive(env, { backlog: [comment(1, 'JD'), comment(2)] });
  assert.equal(env.client.edit('id1', '  new text ').ok, true);
  const e = ws.last('edit');
  assert.deepEqual(e.payload, { room: '1', id: 'id1', text: 'new text' });
  ws.emit('ack', { comment: comment(1, 'JD', '1', { text: 'new text', editedAt: '2024-02-02T09:50:00.000Z' }) }, e.ref);
  assert.deepEqual(env.events.at(-1), ['editDone', 'id1', true, '']);
  assert.equal(env.view.comments[0].text, 'new text');
  assert.equal(env.view.comments[0].editedAt, '2024-02-02T09:50:00.000Z');

  env.client.edit('id1', 'too late');
  ws.emit('error', { code: 'forbidden', message: 'the edit window has passed' }, ws.last('edit').ref);
  assert.deepEqual(env.events.at(-1), ['editDone', 'id1', false, 'This comment can no longer be edited (the edit window has passed).']);
  assert.equal(env.client.edit('id1', 'new text').unchanged, true, 'same text: nothing sent');
  assert.equal(env.client.edit('id1', '   ').ok, false);
  assert.equal(ws.all('edit').length, 2);

  ws.emit('comment_edited', { room: '1', comment: comment(2, 'BadComedian', '1', { text: 'fixed typo', editedAt: '2024-02-02T09:51:00.000Z' }) });
  assert.equal(env.view.comments[1].text, 'fixed typo');
  ws.emit('comment_edited', { room: '2', comment: comment(2, 'BadComedian', '2', { text: 'other room' }) });
  assert.equal(env.view.comments[1].text, 'fixed typo');
});

test('delete: request, ack removes; live comment_deleted; not_found removes; replies keep replyTo', async () => {
  const env = makeEnv();
  const { ws } = await connectLive(env, { backlog: [comment(1, 'JD'), comment(2, 'BadComedian', '1', { replyTo: 'id1' }), comment(3)] });
  env.client.remove('id1');
  const d = ws.last('delete');
  assert.deepEqual(d.payload, { room: '1', id: 'id1' });
  ws.emit('ack', { id: 'id1' }, d.ref);
  assert.deepEqual(env.view.comments.map((c) => c.id), ['id2', 'id3']);
  assert.equal(await env.client.loadParent('id1'), null, 'a deleted parent quotes as deleted, no fetch');
  assert.equal(env.fetches.length, 0);
  env.client.remove('id3');
  ws.emit('error', { code: 'not_found', message: 'gone' }, ws.last('delete').ref);
  assert.deepEqual(env.view.comments.map((c) => c.id), ['id2']);
  ws.emit('comment_deleted', { room: '1', id: 'id2' });
  assert.deepEqual(env.view.comments, []);
  env.client.remove('id9');
  ws.emit('error', { code: 'forbidden', message: 'not yours' }, ws.last('delete').ref);
  assert.deepEqual(env.events.at(-1), ['deleteFailed', 'id9', 'You may only delete your own comments.']);
});

test('reactions: mine from subscribed, toggles, ack counts, live counts keep mine, limits', async () => {
  const env = makeEnv();
  const { ws } = await connectLive(env, {
    backlog: [comment(1, 'BadComedian', '1', { reactions: { '👍': 2, '🎉': 1 } })],
    mine: { id1: ['👍'] },
  });
  assert.deepEqual(env.view.comments[0].mine, ['👍']);
  assert.equal(env.client.react('id1', '👍').ok, true);
  const off = ws.last('react');
  assert.deepEqual(off.payload, { room: '1', id: 'id1', emoji: '👍', on: false });
  assert.equal(env.client.react('id1', '👍').ok, false, 'one request per emoji at a time');
  ws.emit('ack', { id: 'id1', reactions: { '🎉': 1, '👍': 1 } }, off.ref);
  assert.deepEqual(env.view.comments[0].mine, []);
  assert.deepEqual(env.view.comments[0].reactions, { '👍': 1, '🎉': 1 });
  env.client.react('id1', '❤️');
  const on = ws.last('react');
  assert.equal(on.payload.on, true);
  ws.emit('ack', { id: 'id1', reactions: { '👍': 1, '🎉': 1, '❤️': 1 } }, on.ref);
  assert.deepEqual(env.view.comments[0].mine, ['❤️']);
  ws.emit('reactions', { room: '1', id: 'id1', reactions: { '❤️': 4 } });
  assert.deepEqual(env.view.comments[0].reactions, { '❤️': 4 });
  assert.deepEqual(env.view.comments[0].mine, ['❤️'], 'live counts never change mine');
  assert.equal(env.client.react('id1', '🙈').ok, false);
  assert.equal(env.client.react('nope', '👍').ok, false);
  env.client.react('id1', '😂');
  ws.emit('error', { code: 'rate_limited', message: 'x' }, ws.last('react').ref);
  assert.deepEqual(env.events.at(-1), ['error', 'Slow down a little, then try again.']);
  assert.deepEqual(env.view.comments[0].mine, ['❤️']);
});

test('signed out: reactions, edits, deletes and typing never reach the socket', async () => {
  const env = makeEnv({ tokenStatus: 401 });
  env.client.start();
  await flush();
  const ws = env.sockets[0];
  ws.emit('welcome', { connectionId: 'c', user: null, heartbeatMs: 15000 });
  ws.emit('subscribed', { room: '1', comments: [comment(1)], truncated: false }, ws.last('subscribe').ref);
  for (const r of [env.client.react('id1', '👍'), env.client.edit('id1', 'x'), env.client.remove('id1')]) {
    assert.equal(r.ok, false);
    assert.match(r.message, /Sign in/);
  }
  assert.equal(env.client.noteTyping(), false);
  assert.deepEqual(ws.sent.map((m) => m.type), ['subscribe']);
  ws.emit('presence', { room: '1', readers: 2, users: [] });
  assert.deepEqual(env.events.at(-1), ['presence', '2 reading now: 2 guests']);
});

test('presence and typing: shown for 5 s, at most one typing sent per 2 s, own ignored', async () => {
  const env = makeEnv();
  const { ws } = await connectLive(env);
  ws.emit('presence', { room: '1', readers: 3, users: [{ id: 'JD', name: 'John Doe' }, { id: 'Admin', name: 'Administrator' }] });
  ws.emit('presence', { room: '2', readers: 9, users: [] });
  assert.deepEqual(env.events.filter((e) => e[0] === 'presence'), [['presence', '3 reading now: John Doe, Administrator and 1 guest']]);

  assert.equal(env.client.noteTyping(), true);
  assert.deepEqual(ws.last('typing'), { type: 'typing', payload: { room: '1' } });
  await env.timers.advance(1000);
  assert.equal(env.client.noteTyping(), false);
  await env.timers.advance(1000);
  assert.equal(env.client.noteTyping(), true);
  assert.equal(ws.all('typing').length, 2);

  ws.emit('typing', { room: '1', user: { id: 'BadComedian', name: 'Евгений' } });
  assert.deepEqual(env.events.at(-1), ['typing', 'Евгений is typing…']);
  ws.emit('typing', { room: '1', user: { id: 'JD', name: 'John Doe' } }); // own: ignored
  await env.timers.advance(3000);
  ws.emit('typing', { room: '1', user: { id: 'Admin', name: 'Administrator' } });
  assert.deepEqual(env.events.at(-1), ['typing', 'Евгений and Administrator are typing…']);
  await env.timers.advance(2000);
  assert.deepEqual(env.events.at(-1), ['typing', 'Administrator is typing…'], 'gone 5 s after the last typing');
  ws.emit('comment', comment(5, 'Admin'));
  assert.deepEqual(env.events.filter((e) => e[0] === 'typing').at(-1), ['typing', ''], 'a comment from the typer ends it');
  for (let i = 0; i < TYPERS_MAX + 10; i += 1) ws.emit('typing', { room: '1', user: { id: `u${i}`, name: `U${i}` } });
  assert.equal(env.client.typers.size, TYPERS_MAX, 'bounded');
  ws.drop();
  assert.equal(env.client.typers.size, 0, 'cleared when the connection goes');
});

test('reconnect: since for new comments, then limit to refresh edits, reactions, mine and deletions', async () => {
  const initial = [comment(1, 'JD'), comment(2), comment(3), comment(4)];
  const env = makeEnv({ initial, lastSeq: 4 });
  const { ws, sub } = await connectLive(env, { backlog: [] });
  assert.deepEqual(sub.payload, { room: '1', since: 4 });
  const first = ws.last('subscribe');
  assert.deepEqual(first.payload, { room: '1', limit: 4 }, 'the first connection refreshes the rendered page too (mine)');
  ws.emit('subscribed', { room: '1', comments: initial, truncated: false, mine: { id2: ['🎉'] } }, first.ref);
  assert.deepEqual(env.view.comments.find((c) => c.id === 'id2').mine, ['🎉']);

  ws.drop();
  await env.timers.advance(375);
  const ws2 = env.sockets[1];
  ws2.emit('welcome', { connectionId: 'c2', user: { id: 'JD', name: 'John Doe', role: 'user' }, heartbeatMs: 15000 });
  const since = ws2.last('subscribe');
  assert.deepEqual(since.payload, { room: '1', since: 4 });
  ws2.emit('subscribed', { room: '1', comments: [comment(5)], truncated: false, mine: {} }, since.ref);
  assert.equal(env.client.state, 'live');
  const refresh = ws2.last('subscribe');
  assert.notEqual(refresh.ref, since.ref);
  assert.deepEqual(refresh.payload, { room: '1', limit: 5 });
  // meanwhile: 1 edited, 2 lost its 🎉 (by us, elsewhere) and got 👍, 3 deleted
  ws2.emit('subscribed', {
    room: '1',
    comments: [
      comment(1, 'JD', '1', { text: 'edited meanwhile', editedAt: '2024-02-02T09:45:00.000Z' }),
      comment(2, 'BadComedian', '1', { reactions: { '👍': 3 } }),
      comment(4), comment(5),
    ],
    truncated: false,
    mine: { id2: ['👍'] },
  }, refresh.ref);
  const byId = Object.fromEntries(env.view.comments.map((c) => [c.id, c]));
  assert.deepEqual(Object.keys(byId).sort(), ['id1', 'id2', 'id4', 'id5']);
  assert.equal(byId.id1.text, 'edited meanwhile');
  assert.equal(byId.id1.editedAt, '2024-02-02T09:45:00.000Z');
  assert.deepEqual(byId.id2.reactions, { '👍': 3 });
  assert.deepEqual(byId.id2.mine, ['👍']);
  assert.equal(env.client.lastSeq, 5);
  ws2.emit('comment', comment(3)); // a deleted comment never comes back
  assert.equal(env.view.comments.some((c) => c.id === 'id3'), false);
});

test('parents not on the page come from GET /rooms/{room}/comments/{id}, cached, 404 remembered', async () => {
  const env = makeEnv({ parents: { old1: comment(1, 'JD', '1', { id: 'old1', text: 'the parent' }), flaky: 'down' } });
  await connectLive(env, { backlog: [comment(60)] });
  assert.equal((await env.client.loadParent('id60')).seq, 60, 'on the page: no fetch');
  assert.equal(env.fetches.length, 0);
  const [a, b] = await Promise.all([env.client.loadParent('old1'), env.client.loadParent('old1')]);
  assert.equal(a.text, 'the parent');
  assert.equal(b, a);
  assert.equal(env.fetches.length, 1, 'one request for two quotes');
  const [url, opts] = env.fetches[0];
  assert.equal(url, 'http://gw/rooms/1/comments/old1');
  assert.equal(opts.credentials, 'omit');
  assert.equal(await env.client.loadParent('old1'), a);
  assert.equal(await env.client.loadParent('missing'), null);
  assert.equal(await env.client.loadParent('missing'), null);
  assert.equal(env.fetches.length, 2, '404 remembered');
  assert.equal(await env.client.loadParent('flaky'), null);
  assert.equal(await env.client.loadParent('flaky'), null);
  assert.equal(env.fetches.length, 4, 'a network failure is not remembered');
  assert.equal(await env.client.loadParent('a/b?c'), null);
  assert.equal(env.fetches.at(-1)[0], 'http://gw/rooms/1/comments/a%2Fb%3Fc');
});

test('edits and deletes in flight when the connection drops are reported, not resent', async () => {
  const env = makeEnv();
  const { ws } = await connectLive(env, { backlog: [comment(1, 'JD'), comment(2, 'JD')] });
  env.client.edit('id1', 'changed');
  env.client.remove('id2');
  ws.drop();
  assert.deepEqual(env.events.filter((e) => e[0] === 'editDone' || e[0] === 'deleteFailed'),
    [['editDone', 'id1', false, 'Connection lost; try again.'], ['deleteFailed', 'id2', 'Connection lost; try again.']]);
  assert.equal(env.client.requests.size, 0);
});

// ---------------------------------------------------------------- subscribe errors: retry on the same socket

const errorsShown = (env) => env.events.filter((e) => e[0] === 'error' || e[0] === 'clearError');

test('backoffDelay with the subscribe retry base and cap: 1 s doubling to at most 30 s', () => {
  const { SUBSCRIBE_RETRY_BASE_MS: base, SUBSCRIBE_RETRY_MAX_MS: max } = mod;
  assert.equal(backoffDelay(0, () => 1, base, max), 1000);
  assert.equal(backoffDelay(0, () => 0, base, max), 500);
  assert.equal(backoffDelay(2, () => 1, base, max), 4000);
  assert.equal(backoffDelay(5, () => 1, base, max), 30_000);
  assert.equal(backoffDelay(40, () => 0, base, max), 15_000);
  assert.equal(backoffDelay(3, () => 1), 4000, 'the reconnect backoff is unchanged');
});

test('subscribe answered unavailable: same phase again after the backoff on the same socket, live when it gets through', async () => {
  const env = makeEnv({ initial: [comment(1), comment(2)] });
  env.client.start();
  await flush();
  const ws = env.sockets[0];
  ws.emit('welcome', { connectionId: 'c', user: { id: 'JD', name: 'John Doe', role: 'user' }, heartbeatMs: 15000 });
  const first = ws.last('subscribe');
  assert.deepEqual(first.payload, { room: '1', since: 2 });
  ws.emit('error', { code: 'unavailable', message: 'the store does not answer' }, first.ref);
  assert.equal(env.client.state, 'connecting');
  assert.deepEqual(errorsShown(env).at(-1),
    ['error', 'Cannot load live comments: the comments are unavailable right now; trying again in 1 s.']);
  assert.deepEqual(env.timers.pendingDelays(), [750]); // attempt 0, jitter 0.5

  await env.timers.advance(749);
  assert.equal(ws.all('subscribe').length, 1, 'not before the backoff');
  await env.timers.advance(1);
  assert.equal(ws.all('subscribe').length, 2);
  const second = ws.last('subscribe');
  assert.notEqual(second.ref, first.ref);
  assert.deepEqual(second.payload, { room: '1', since: 2 });
  assert.equal(env.sockets.length, 1, 'no reconnect for a subscribe error');

  // More than a page missed, and the continuation fails too: `since` is recomputed from lastSeq.
  ws.emit('subscribed', { room: '1', comments: [comment(3), comment(4)], truncated: true }, second.ref);
  assert.deepEqual(errorsShown(env).at(-1), ['clearError']);
  const third = ws.last('subscribe');
  assert.deepEqual(third.payload, { room: '1', since: 4 });
  ws.emit('error', { code: 'unavailable', message: 'x' }, third.ref);
  assert.deepEqual(env.timers.pendingDelays(), [750], 'the backoff restarted after the subscribed');
  await env.timers.advance(750);
  const fourth = ws.last('subscribe');
  assert.deepEqual(fourth.payload, { room: '1', since: 4 });
  ws.emit('subscribed', { room: '1', comments: [comment(5)], truncated: false }, fourth.ref);
  assert.equal(env.client.state, 'live');
  assert.deepEqual(errorsShown(env).at(-1), ['clearError']);
  assert.deepEqual(env.view.comments.map((c) => c.seq), [1, 2, 3, 4, 5]);
  assert.deepEqual(ws.last('subscribe').payload, { room: '1', limit: 5 }, 'then the refresh, as after any since');
  assert.deepEqual(env.timers.pendingDelays(), []);
});

test('a failed latest is retried as latest, a failed refresh as refresh', async () => {
  const env = makeEnv();
  env.client.start();
  await flush();
  const ws = env.sockets[0];
  ws.emit('welcome', { connectionId: 'c', user: null, heartbeatMs: 15000 });
  ws.emit('error', { code: 'rate_limited', message: 'slow down' }, ws.last('subscribe').ref);
  assert.deepEqual(errorsShown(env).at(-1), ['error', 'Cannot load live comments: too many requests; trying again in 1 s.']);
  await env.timers.advance(750);
  assert.deepEqual(ws.last('subscribe').payload, { room: '1' });
  ws.emit('subscribed', { room: '1', comments: [comment(1), comment(2)], truncated: false }, ws.last('subscribe').ref);
  assert.equal(env.client.state, 'live');

  // Reconnect: since, then refresh; the refresh fails and is retried as a refresh.
  ws.drop();
  await env.timers.advance(375);
  const ws2 = env.sockets[1];
  ws2.emit('welcome', { connectionId: 'c2', user: null, heartbeatMs: 15000 });
  ws2.emit('subscribed', { room: '1', comments: [], truncated: false }, ws2.last('subscribe').ref);
  const refresh = ws2.last('subscribe');
  assert.deepEqual(refresh.payload, { room: '1', limit: 2 });
  ws2.emit('error', { code: 'internal', message: 'boom.' }, refresh.ref);
  assert.deepEqual(errorsShown(env).at(-1), ['error', 'Cannot load live comments: boom; trying again in 1 s.']);
  await env.timers.advance(750);
  assert.deepEqual(ws2.last('subscribe').payload, { room: '1', limit: 2 });
  assert.equal(ws2.all('subscribe').length, 3);
});

test('subscribe retry backoff grows to 30 s with jitter, and restarts once a subscribed arrives', async () => {
  const env = makeEnv();
  env.client.start();
  await flush();
  const ws = env.sockets[0];
  ws.emit('welcome', { connectionId: 'c', user: null, heartbeatMs: 15000 });
  const delays = [];
  const shown = [];
  for (let i = 0; i < 8; i += 1) {
    ws.emit('error', { code: 'unavailable', message: 'x' }, ws.last('subscribe').ref);
    const [d] = env.timers.pendingDelays();
    delays.push(d);
    shown.push(errorsShown(env).at(-1)[1].match(/in (\d+) s\.$/)[1]);
    await env.timers.advance(d);
  }
  assert.deepEqual(delays, [750, 1500, 3000, 6000, 12_000, 22_500, 22_500, 22_500]);
  assert.deepEqual(shown, ['1', '2', '3', '6', '12', '23', '23', '23']);
  assert.equal(ws.all('subscribe').length, 1 + 8);
  assert.equal(env.client.state, 'connecting');
  ws.emit('subscribed', { room: '1', comments: [], truncated: false }, ws.last('subscribe').ref);
  assert.equal(env.client.state, 'live');
  assert.deepEqual(errorsShown(env).at(-1), ['clearError']);

  // The next subscribe error (here on a new connection) starts from 1 s again.
  ws.drop();
  await env.timers.advance(375);
  const ws2 = env.sockets[1];
  ws2.emit('welcome', { connectionId: 'c2', user: null, heartbeatMs: 15000 });
  ws2.emit('error', { code: 'unavailable', message: 'x' }, ws2.last('subscribe').ref);
  assert.deepEqual(env.timers.pendingDelays(), [750]);
});

test('bad_request, unauthorized and forbidden answers to a subscribe are not retried', async () => {
  for (const code of ['bad_request', 'unauthorized', 'forbidden']) {
    const env = makeEnv();
    env.client.start();
    await flush();
    const ws = env.sockets[0];
    ws.emit('welcome', { connectionId: 'c', user: null, heartbeatMs: 15000 });
    ws.emit('error', { code, message: 'invalid room' }, ws.last('subscribe').ref);
    assert.match(errorsShown(env).at(-1)[1], /^Cannot load live comments: /, code);
    assert.doesNotMatch(errorsShown(env).at(-1)[1], /trying again/, code);
    assert.deepEqual(env.timers.pendingDelays(), [], code);
    await env.timers.advance(40_000);
    assert.equal(ws.all('subscribe').length, 1, code);
    assert.equal(env.client.state, 'connecting', code);
    env.client.stop();
  }
});

test('a close before the retry fires cancels it: the reconnect subscribes once, no stale retry', async () => {
  const env = makeEnv({ initial: [comment(1)] });
  env.client.start();
  await flush();
  const ws = env.sockets[0];
  ws.emit('welcome', { connectionId: 'c', user: null, heartbeatMs: 15000 });
  ws.emit('error', { code: 'unavailable', message: 'x' }, ws.last('subscribe').ref);
  assert.deepEqual(env.timers.pendingDelays(), [750]);
  ws.drop();
  assert.deepEqual(env.timers.pendingDelays(), [375], 'only the reconnect is left');
  await env.timers.advance(375);
  const ws2 = env.sockets[1];
  ws2.emit('welcome', { connectionId: 'c2', user: null, heartbeatMs: 15000 });
  assert.deepEqual(ws2.all('subscribe').map((m) => m.payload), [{ room: '1', since: 1 }]);
  await env.timers.advance(30_000);
  assert.equal(ws.all('subscribe').length, 1);
  assert.equal(ws2.all('subscribe').length, 1, 'no retry from the old socket');
  ws2.emit('subscribed', { room: '1', comments: [], truncated: false }, ws2.last('subscribe').ref);
  assert.equal(env.client.state, 'live');
  assert.deepEqual(errorsShown(env).at(-1), ['clearError']);

  // stop() (pagehide) cancels it too.
  ws2.emit('error', { code: 'unavailable', message: 'x' }, ws2.last('subscribe').ref);
  assert.equal(env.client.subscribeRetryTimer !== null, true);
  env.client.stop();
  assert.deepEqual(env.timers.pendingDelays(), []);
});

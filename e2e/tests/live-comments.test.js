// End-to-end test of the seed scenario in headless Chromium against the real stack:
// two users in two browser contexts, /view (room `index`) and /view/book/{id} (room `{id}`) open
// side by side; comments appear where they should within a second and nowhere else, own comments
// are right-aligned, and a dropped connection recovers what it missed, each comment once.
//
// Runs twice: with a private redis-server + SecantusDB (MONGO_URL/REDIS_URL set), and in embedded
// mode (neither set; the services load the demo data). Skips (with a message) only when the
// cargo binaries are missing; build them with `cargo build -p counter -p library -p comments-gateway`
// (or run e2e/run.sh).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, SCREENSHOT_DIR, binaryPaths, chromiumPath, seedMongo, startStack } from '../lib/stack.js';

const LIVE_MS = 1000; // "appears within a second"
const ABSENT_MS = 1500; // how long we watch for a comment that must not appear
const { missing } = binaryPaths();
const missingMessage = missing.length
  ? `service binaries missing (${missing.join(', ')}): build them with ` +
    '`cargo build -p counter -p library -p comments-gateway` or run e2e/run.sh'
  : false;

// servers: private redis-server + SecantusDB; embedded: no MONGO_URL/REDIS_URL;
// mock: e2e/mock/mock-stack.js instead of the Rust services (for work on comments.js only).
const MODES = (process.env.E2E_MODES || 'servers,embedded').split(',').map((s) => s.trim()).filter(Boolean);
const skipFor = (mode) => (mode === 'mock' ? false : missingMessage);
if (missingMessage && MODES.some((m) => m !== 'mock')) console.log(`# SKIP e2e: ${missingMessage}`);

// ------------------------------------------------------------------ page helpers

/** Signs up a fresh user through the JSON API and signs the context in (session cookie). */
async function signUpAndIn(context, base, username) {
  const password = `pw-${randomBytes(6).toString('hex')}`;
  const headers = { Origin: base, Accept: 'application/json' };
  const signup = await context.request.post(`${base}/api/v1/user/signup`, {
    data: { username, fullname: `User ${username}`, email: `${username.toLowerCase()}@example.com`, password },
    headers,
  });
  assert.equal(signup.status(), 201, `signup ${username}: ${signup.status()} ${await signup.text()}`);
  const login = await context.request.post(`${base}/api/v1/user/login`, { data: { username, password }, headers });
  assert.equal(login.status(), 201, `login ${username}: ${login.status()} ${await login.text()}`);
  const token = await context.request.get(`${base}/api/v1/user/token`, { headers });
  assert.equal(token.status(), 200, `token for ${username}: ${token.status()} ${await token.text()}`);
  return { username, password };
}

async function openLive(context, url) {
  const page = await context.newPage();
  page.on('pageerror', (err) => { page.__errors = [...(page.__errors || []), String(err)]; });
  const res = await page.goto(url, { waitUntil: 'domcontentloaded' });
  assert.equal(res.status(), 200, `GET ${url}: ${res.status()}`);
  await page.waitForFunction(() => window.__comments && window.__comments.state === 'live', null, { timeout: 10_000 })
    .catch(async (err) => {
      const info = await page.evaluate(() => ({
        hasRoot: !!document.getElementById('comments'),
        state: window.__comments ? window.__comments.state : 'no window.__comments',
        attrs: document.getElementById('comments')
          ? Object.fromEntries([...document.getElementById('comments').attributes].map((a) => [a.name, a.value]))
          : null,
      }));
      throw new Error(`${url} never got live: ${JSON.stringify(info)}; page errors: ${JSON.stringify(page.__errors || [])}; ${err.message}`);
    });
  return page;
}

/** The comment elements of the page's list whose text is exactly `text`. */
function countText(page, text) {
  return page.evaluate((t) => [...document.querySelectorAll('#comments .comment-list .comment')]
    .filter((el) => (el.querySelector('.comment-text') || el).textContent.includes(t)).length, text);
}

function waitText(page, text, timeout = LIVE_MS) {
  return page.waitForFunction((t) => [...document.querySelectorAll('#comments .comment-list .comment')]
    .some((el) => (el.querySelector('.comment-text') || el).textContent.includes(t)), text, { timeout, polling: 20 });
}

async function post(page, text) {
  const form = page.locator('#comments form.comment-form');
  await form.locator('textarea[name="text"]').fill(text);
  const started = Date.now();
  await form.locator('button[type="submit"], button:not([type]), input[type="submit"]').first().click();
  return started;
}

/** Facts about the comment element holding `text`: own class, right alignment, seqs around it. */
function describeComment(page, text) {
  return page.evaluate((t) => {
    const list = document.querySelector('#comments .comment-list');
    const el = [...list.querySelectorAll('.comment')]
      .find((e) => (e.querySelector('.comment-text') || e).textContent.includes(t));
    if (!el) return null;
    const cs = getComputedStyle(el);
    const r = el.getBoundingClientRect();
    const lr = list.getBoundingClientRect();
    const textRight = cs.textAlign === 'right' || cs.textAlign === 'end' || cs.textAlign === '-webkit-right';
    const boxRight = (r.left - lr.left) > (lr.right - r.right) + 2;
    const flexRight = cs.alignSelf === 'flex-end' || cs.alignSelf === 'end' || cs.justifySelf === 'end';
    return {
      own: el.classList.contains('own'),
      rightAligned: textRight || boxRight || flexRight,
      textAlign: cs.textAlign,
      box: { left: r.left - lr.left, right: lr.right - r.right },
      author: el.dataset.author,
      seq: Number(el.dataset.seq),
      id: el.dataset.id,
    };
  }, text);
}

function seqsOf(page) {
  return page.evaluate(() => [...document.querySelectorAll('#comments .comment-list .comment')]
    .map((el) => Number(el.dataset.seq)));
}

/** A named step of the scenario: its name goes into the failure message. */
async function step(name, fn) {
  const started = Date.now();
  try {
    await fn();
  } catch (err) {
    err.message = `step "${name}" failed: ${err.message}`;
    throw err;
  }
  console.log(`# ok: ${name} (${Date.now() - started} ms)`);
}

async function screenshotAll(pages, label) {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  for (const [name, page] of Object.entries(pages)) {
    try {
      await page.screenshot({ path: path.join(SCREENSHOT_DIR, `${label}-${name}.png`), fullPage: true });
    } catch { /* page may be gone */ }
  }
}

// ------------------------------------------------------------------ the scenario

for (const mode of MODES) {
  test(`live comments, ${mode} stores: two users, two rooms, own alignment, recovery after a drop`, { skip: skipFor(mode), timeout: 240_000 }, async () => {
    const exe = chromiumPath();
    assert.ok(exe, 'chromium not found at /usr/bin/chromium (apt-get install -y chromium) or $CHROMIUM_PATH');
    const pages = {};
    const contexts = [];
    // servers mode: the database starts as the compose stack's does, seeded by data/mongo/init-db.js
    let seeded = null;
    const beforeServices = mode === 'servers'
      ? ({ mongoBase, db }) => { seeded = seedMongo(mongoBase, db); }
      : null;
    const stack = await startStack({ mode, label: mode, beforeServices });
    let browser;
    try {
      browser = await chromium.launch({ executablePath: exe, args: CHROMIUM_ARGS, headless: true });
      if (seeded) {
        console.log(`# seeded from init-db.js: ${JSON.stringify(seeded)}`);
        assert.deepEqual(seeded, { books: 4, comments: 5, counters: 1, users: 3 });
      }
      await scenario(stack, browser, contexts, pages, mode);
      if (process.env.E2E_SCREENSHOTS === 'always') await screenshotAll(pages, `${mode}-ok`);
    } catch (err) {
      await screenshotAll(pages, mode);
      err.message += `\n(screenshots in e2e/screenshots/${mode}-*.png)\n${stack.logs()}`;
      throw err;
    } finally {
      for (const c of contexts) await c.close().catch(() => {});
      if (browser) await browser.close().catch(() => {});
      await stack.stop();
    }
  });
}

async function scenario(stack, browser, contexts, pages, mode) {
  const base = stack.libraryUrl;
  const tag = randomBytes(3).toString('hex');
  const ctxA = await browser.newContext();
  const ctxB = await browser.newContext();
  contexts.push(ctxA, ctxB);
  const userA = await signUpAndIn(ctxA, base, `alice_${tag}`);
  const userB = await signUpAndIn(ctxB, base, `bob_${tag}`);

  // Book 1 comes from the demo data: loaded by the embedded stores, or by init-db.js into MongoDB.
  const bookId = 1;
  const existing = await ctxA.request.get(`${base}/api/v1/book/1`);
  assert.equal(existing.status(), 200, `demo book 1: ${await existing.text()}`);
  assert.equal((await existing.json()).title, 'Война и мир');
  if (mode !== 'mock') {
    // the books counter continues after the demo books
    const created = await ctxA.request.post(`${base}/api/v1/book`, {
      data: { title: `e2e ${tag}`, authors: 'e2e', description: 'e2e', favorite: 1 },
      headers: { Origin: base, Accept: 'application/json' },
    });
    assert.equal(created.status(), 201, `create book: ${await created.text()}`);
    assert.equal((await created.json()).id, 5, 'first new book after the 4 demo books');
  }
  const bookUrl = `${base}/view/book/${bookId}`;

  pages.aIndex = await openLive(ctxA, `${base}/view`);
  pages.aBook = await openLive(ctxA, bookUrl);
  pages.bBook = await openLive(ctxB, bookUrl);
  pages.bIndex = await openLive(ctxB, `${base}/view`);
  for (const [name, p] of Object.entries(pages)) {
    if (name.startsWith('anon')) continue;
    const room = await p.getAttribute('#comments', 'data-room');
    assert.equal(room, name.endsWith('Index') ? 'index' : String(bookId), `${name} data-room`);
    assert.equal(await p.getAttribute('#comments', 'data-username'),
      name.startsWith('a') ? userA.username : userB.username, `${name} data-username`);
  }
  // a signed-out visitor reads live, without a form
  const ctxAnon = await browser.newContext();
  contexts.push(ctxAnon);
  pages.anonBook = await openLive(ctxAnon, bookUrl);
  assert.equal(await pages.anonBook.locator('#comments form.comment-form:visible').count(), 0, 'no form when signed out');

  if (mode !== 'mock') {
    // the demo users' committed argon2 hashes verify in the real library (password = username)
    for (const username of ['JD', 'BadComedian', 'Admin']) {
      const r = await ctxAnon.request.post(`${base}/api/v1/user/login`, {
        data: { username, password: username }, headers: { Origin: base, Accept: 'application/json' },
      });
      assert.equal(r.status(), 201, `demo login ${username}: ${await r.text()}`);
    }
    await ctxAnon.clearCookies();
    // demo comments are server-rendered with their seq
    assert.ok((await seqsOf(pages.bBook)).length >= 2, 'demo comments of book 1 on the page');
    assert.ok((await seqsOf(pages.aIndex)).length >= 3, 'demo comments of index on the page');
  }

  await step('a comment on the book reaches both book windows within 1 s, never /view', async () => {
    const text = `book comment ${tag} 1`;
    const waits = [waitText(pages.aBook, text), waitText(pages.bBook, text), waitText(pages.anonBook, text)];
    const started = await post(pages.aBook, text);
    await Promise.all(waits);
    const elapsed = Date.now() - started;
    console.log(`# book comment visible in both book windows ${elapsed} ms after the click`);
    assert.ok(elapsed <= LIVE_MS + 200, `took ${elapsed} ms`);
    await new Promise((r) => setTimeout(r, ABSENT_MS));
    assert.equal(await countText(pages.aIndex, text), 0, 'not on /view (A)');
    assert.equal(await countText(pages.bIndex, text), 0, 'not on /view (B)');
    assert.equal(await countText(pages.aBook, text), 1);
    assert.equal(await countText(pages.bBook, text), 1);
    // own comment: right-aligned for its author, not for the other user
    const mine = await describeComment(pages.aBook, text);
    const theirs = await describeComment(pages.bBook, text);
    const anon = await describeComment(pages.anonBook, text);
    assert.ok(!anon.own && !anon.rightAligned, `not own when signed out: ${JSON.stringify(anon)}`);
    assert.equal(mine.own, true, `own in A: ${JSON.stringify(mine)}`);
    assert.equal(mine.rightAligned, true, `right-aligned in A: ${JSON.stringify(mine)}`);
    assert.equal(theirs.own, false, `not own in B: ${JSON.stringify(theirs)}`);
    assert.equal(theirs.rightAligned, false, `left in B: ${JSON.stringify(theirs)}`);
    assert.equal(mine.author, userA.username);
    assert.equal(mine.id, theirs.id);
    // the form is usable again and empty
    assert.equal(await pages.aBook.locator('#comments textarea[name="text"]').inputValue(), '');
  });

  await step('a comment on /view reaches both /view windows within 1 s, never the book', async () => {
    const text = `index comment ${tag} 1`;
    const waits = [waitText(pages.aIndex, text), waitText(pages.bIndex, text)];
    const started = await post(pages.bIndex, text);
    await Promise.all(waits);
    const elapsed = Date.now() - started;
    console.log(`# index comment visible in both /view windows ${elapsed} ms after the click`);
    assert.ok(elapsed <= LIVE_MS + 200, `took ${elapsed} ms`);
    await new Promise((r) => setTimeout(r, ABSENT_MS));
    assert.equal(await countText(pages.aBook, text), 0, 'not on the book (A)');
    assert.equal(await countText(pages.bBook, text), 0, 'not on the book (B)');
    const mine = await describeComment(pages.bIndex, text);
    const theirs = await describeComment(pages.aIndex, text);
    assert.ok(mine.own && mine.rightAligned, `own in B: ${JSON.stringify(mine)}`);
    assert.ok(!theirs.own && !theirs.rightAligned, `not own in A: ${JSON.stringify(theirs)}`);
  });

  await step('user text is rendered as text, never as HTML', async () => {
    const text = `<img src=x onerror="window.__xss=1"><b>xss ${tag}</b>`;
    const waits = [waitText(pages.aBook, text), waitText(pages.bBook, text)];
    await post(pages.bBook, text);
    await Promise.all(waits);
    for (const p of [pages.aBook, pages.bBook]) {
      const r = await p.evaluate(() => ({
        xss: window.__xss,
        imgs: document.querySelectorAll('#comments .comment-list img').length,
        bolds: document.querySelectorAll('#comments .comment-list .comment-text b').length,
      }));
      assert.deepEqual(r, { xss: undefined, imgs: 0, bolds: 0 });
    }
  });

  await step('a dropped connection recovers the missed comments exactly once', async () => {
    const victim = pages.bBook;
    await ctxB.setOffline(true);
    await victim.evaluate(() => window.__comments.socket && window.__comments.socket.close());
    await victim.waitForFunction(() => window.__comments.state !== 'live', null, { timeout: 5000 });
    // meanwhile: A writes twice on the book, and B writes one offline (queued, sent on reconnect)
    const missed = [`missed ${tag} 1`, `missed ${tag} 2`];
    for (const text of missed) {
      const w = waitText(pages.aBook, text);
      await post(pages.aBook, text);
      await w;
    }
    const queued = `queued while offline ${tag}`;
    await post(victim, queued);
    await new Promise((r) => setTimeout(r, 500));
    for (const text of missed) assert.equal(await countText(victim, text), 0, 'offline window got it anyway?');
    assert.equal(await countText(pages.aBook, queued), 0, 'queued post went out while offline?');
    assert.ok(await victim.evaluate(() => window.__comments.state !== 'live'));

    await ctxB.setOffline(false);
    await victim.waitForFunction(() => window.__comments.state === 'live', null, { timeout: 15_000 });
    for (const text of missed) await waitText(victim, text, 5000);
    await waitText(victim, queued, 5000);
    await waitText(pages.aBook, queued, 5000);
    await new Promise((r) => setTimeout(r, 500));
    for (const text of [...missed, queued]) {
      assert.equal(await countText(victim, text), 1, `exactly once in the recovered window: ${text}`);
      assert.equal(await countText(pages.aBook, text), 1, `exactly once in A: ${text}`);
    }
    const seqs = await seqsOf(victim);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'ordered by seq');
    assert.equal(new Set(seqs).size, seqs.length, 'no seq twice');
    assert.deepEqual(await seqsOf(pages.aBook), seqs, 'both windows show the same comments');
    // and /view of B is live again too, with nothing of the book in it
    await pages.bIndex.waitForFunction(() => window.__comments.state === 'live', null, { timeout: 15_000 });
    for (const text of [...missed, queued]) assert.equal(await countText(pages.bIndex, text), 0);
  });

  await step('the older-comments button asks the gateway for history', async () => {
    const p = pages.aBook;
    const before = await seqsOf(p);
    await p.evaluate(() => window.__comments.client.view.setMore(true));
    await p.locator('#comments .comment-older').click();
    // everything is already on the page: the gateway answers `more: false` and the button hides
    await p.waitForFunction(() => document.querySelector('#comments .comment-older').hidden, null, { timeout: 5000 });
    assert.deepEqual(await seqsOf(p), before);
    assert.equal(await p.evaluate(() => document.querySelector('#comments .comment-error')?.textContent || ''), '');
  });

  for (const [name, p] of Object.entries(pages)) {
    assert.deepEqual(p.__errors || [], [], `no script errors in ${name}`);
  }
}

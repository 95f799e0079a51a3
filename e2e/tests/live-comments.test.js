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
  // Headless Chromium stops drawing frames in a window that is not in front, and a click waits
  // for frames (its "stable" check): bring the window to the front as a user would.
  await page.bringToFront();
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
      // A long page shrinks to nothing in an image viewer: the first and the last screenful
      // of the comments section at full size too.
      const box = await page.evaluate(() => {
        const r = document.querySelector('#comments')?.getBoundingClientRect();
        return r ? { top: r.top + window.scrollY, height: r.height, width: document.documentElement.clientWidth } : null;
      });
      if (box && box.height > 1200) {
        const clip = (y) => ({ x: 0, y, width: box.width, height: 1000 });
        await page.screenshot({ path: path.join(SCREENSHOT_DIR, `${label}-${name}-comments-top.png`), fullPage: true, clip: clip(box.top) });
        await page.screenshot({ path: path.join(SCREENSHOT_DIR, `${label}-${name}-comments-end.png`), fullPage: true, clip: clip(box.top + box.height - 1000) });
      }
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
  // Each reader in another time zone: times show in the reader's own.
  const ctxA = await browser.newContext({ timezoneId: 'Europe/Berlin', locale: 'en-GB' });
  const ctxB = await browser.newContext({ timezoneId: 'Asia/Tokyo', locale: 'en-GB' });
  contexts.push(ctxA, ctxB);
  const userA = await signUpAndIn(ctxA, base, `alice_${tag}`);
  // B goes through library B, whose pages connect to gateway B (servers mode: another instance)
  const baseB = stack.libraryUrlB || base;
  const userB = await signUpAndIn(ctxB, baseB, `bob_${tag}`);

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
  const bookUrlB = `${baseB}/view/book/${bookId}`;

  pages.aIndex = await openLive(ctxA, `${base}/view`);
  pages.aBook = await openLive(ctxA, bookUrl);
  pages.bBook = await openLive(ctxB, bookUrlB);
  pages.bIndex = await openLive(ctxB, `${baseB}/view`);
  if (stack.instances > 1) {
    const gw = (p) => p.getAttribute('#comments', 'data-gateway-url');
    assert.notEqual(await gw(pages.bBook), await gw(pages.aBook), 'A and B on different gateway instances');
  }
  for (const [name, p] of Object.entries(pages)) {
    if (name.startsWith('anon')) continue;
    const room = await p.getAttribute('#comments', 'data-room');
    assert.equal(room, name.endsWith('Index') ? 'index' : String(bookId), `${name} data-room`);
    assert.equal(await p.getAttribute('#comments', 'data-username'),
      name.startsWith('a') ? userA.username : userB.username, `${name} data-username`);
  }
  // a signed-out visitor reads live, without a form
  const ctxAnon = await browser.newContext({ locale: 'en-GB' });
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

  // Discussions (v3): replies, edits, deletions, reactions, presence, typing, times, keys.
  await discussion({ browser, contexts, pages, base, baseB, tag, userA, userB, ctxA, ctxB, ctxAnon, bookUrl, bookUrlB, mode });

  for (const [name, p] of Object.entries(pages)) {
    assert.deepEqual(p.__errors || [], [], `no script errors in ${name}`);
  }
}

// ------------------------------------------------------------------ discussions (v3)

/** The list item of the comment whose text includes `text`. */
function item(page, text) {
  return page.locator('#comments .comment-list > .comment', {
    has: page.locator('.comment-text', { hasText: text }),
  });
}

/** Waits until `fn(arg)` is truthy in the page (polling), with a helpful message. */
async function until(page, what, fn, arg, timeout = 3000) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 50 });
  } catch (err) {
    throw new Error(`${what}: not within ${timeout} ms (${err.message.split('\n')[0]})`);
  }
}

function presenceText(page) {
  return page.evaluate(() => document.querySelector('#comments .comments-presence')?.textContent || '');
}

function waitPresence(page, expected, timeout = 4000) {
  return until(page, `presence "${expected}"`, (t) => document.querySelector('#comments .comments-presence')?.textContent === t, expected, timeout);
}

/** Reaction counts shown on a comment, and which are pressed: {"👍": [2, true]}. */
function reactionsOf(page, text) {
  return page.evaluate((t) => {
    const li = [...document.querySelectorAll('#comments .comment-list > .comment')]
      .find((e) => e.querySelector('.comment-text')?.textContent.includes(t));
    if (!li) return null;
    const out = {};
    for (const b of li.querySelectorAll('.comment-reactions .reaction')) {
      out[b.dataset.emoji] = [Number(b.querySelector('.reaction-count').textContent), b.getAttribute('aria-pressed') === 'true'];
    }
    return out;
  }, text);
}

function waitReactions(page, text, expected, timeout = 3000) {
  return until(page, `reactions ${JSON.stringify(expected)} on "${text}"`, ([t, want]) => {
    const li = [...document.querySelectorAll('#comments .comment-list > .comment')]
      .find((e) => e.querySelector('.comment-text')?.textContent.includes(t));
    if (!li) return false;
    const got = {};
    for (const b of li.querySelectorAll('.comment-reactions .reaction')) got[b.dataset.emoji] = Number(b.querySelector('.reaction-count').textContent);
    return JSON.stringify(got) === JSON.stringify(want);
  }, [text, expected], timeout);
}

function waitGone(page, text, timeout = 3000) {
  return until(page, `"${text}" gone`, (t) => ![...document.querySelectorAll('#comments .comment-list .comment-text')]
    .some((e) => e.textContent.includes(t)), text, timeout);
}

async function discussion({ browser, contexts, pages, base, baseB, tag, userA, userB, ctxA, ctxB, ctxAnon, bookUrl, bookUrlB, mode }) {
  const nameA = `User ${userA.username}`;
  const nameB = `User ${userB.username}`;
  const bookWindows = { aBook: pages.aBook, bBook: pages.bBook, anonBook: pages.anonBook };
  const parentText = `book comment ${tag} 1`;

  await step('presence: "3 reading now: A, B and 1 guest" in every window; A with three tabs (on both instances) counts once', async () => {
    const three = `3 reading now: ${nameA}, ${nameB} and 1 guest`;
    for (const p of Object.values(bookWindows)) await waitPresence(p, three);
    const tabs = [await openLive(ctxA, bookUrlB), await openLive(ctxA, bookUrl)];
    await new Promise((r) => setTimeout(r, 2500));
    for (const p of [...Object.values(bookWindows), ...tabs]) assert.equal(await presenceText(p), three, 'a user with three tabs counts once');
    for (const t of tabs) await t.close();
    const guest = await openLive(ctxAnon, bookUrlB);
    const four = `4 reading now: ${nameA}, ${nameB} and 2 guests`;
    for (const p of Object.values(bookWindows)) await waitPresence(p, four);
    await guest.close();
    for (const p of Object.values(bookWindows)) await waitPresence(p, three, 7000);
    // /view is another room: nobody of the book in its line
    assert.ok(!(await presenceText(pages.aIndex)).startsWith('3 reading now'), await presenceText(pages.aIndex));
  });

  await step('typing: "A is typing…" in the other windows, never for A itself, gone a few seconds after', async () => {
    await pages.aBook.bringToFront();
    const area = pages.aBook.locator('#comments textarea[name="text"]');
    await area.click();
    await area.pressSequentially('thinking', { delay: 30 });
    const line = `${nameA} is typing…`;
    for (const p of [pages.bBook, pages.anonBook]) {
      await until(p, 'typing line', (t) => document.querySelector('#comments .comments-typing')?.textContent === t, line, 3000);
      assert.equal(await p.locator('#comments .comments-typing').isVisible(), true);
    }
    assert.equal(await pages.aBook.evaluate(() => document.querySelector('#comments .comments-typing')?.textContent || ''), '');
    assert.equal(await pages.bIndex.evaluate(() => document.querySelector('#comments .comments-typing')?.textContent || ''), '', 'other room');
    await area.fill('');
    for (const p of [pages.bBook, pages.anonBook]) {
      await until(p, 'typing line gone', () => !document.querySelector('#comments .comments-typing')?.textContent, null, 8000);
    }
  });

  let replyText;
  await step('reply: B answers A with the keyboard (Enter sends, Shift+Enter breaks the line); quote and link everywhere', async () => {
    await pages.bBook.bringToFront();
    const target = item(pages.bBook, parentText);
    await target.locator('[data-action="reply"]').focus();
    await pages.bBook.keyboard.press('Enter');
    const replying = pages.bBook.locator('#comments .comment-replying');
    await replying.waitFor({ state: 'visible', timeout: 2000 });
    assert.match(await replying.textContent(), new RegExp(`Replying to ${nameA}`));
    const focused = await pages.bBook.evaluate(() => document.activeElement?.getAttribute('name'));
    assert.equal(focused, 'text', 'Reply moves the focus to the form');
    replyText = `reply ${tag}`;
    await pages.bBook.keyboard.type(`${replyText} line one`);
    await pages.bBook.keyboard.press('Shift+Enter');
    await pages.bBook.keyboard.type('line two');
    const waits = Object.values(bookWindows).map((p) => waitText(p, replyText, LIVE_MS + 500));
    await pages.bBook.keyboard.press('Enter');
    await Promise.all(waits);
    const parentId = await item(pages.aBook, parentText).getAttribute('data-id');
    for (const [name, p] of Object.entries(bookWindows)) {
      const li = item(p, replyText);
      assert.equal(await li.locator('.comment-text').textContent(), `${replyText} line one\nline two`, `${name}: Shift+Enter kept the line break`);
      assert.equal(await li.getAttribute('data-reply-to'), parentId, name);
      const quote = li.locator('.comment-quote');
      await until(p, 'quote filled', (t) => [...document.querySelectorAll('#comments .comment-quote-text')].some((e) => e.textContent.includes(t)), parentText, 2000);
      assert.match(await quote.textContent(), new RegExp(`${nameA}: ${parentText}`), name);
      assert.equal(await quote.locator('a').getAttribute('href'), `#comment-${parentId}`, name);
    }
    assert.equal(await pages.bBook.locator('#comments .comment-replying').count(), 0, 'reply state cleared after sending');
    assert.equal(await pages.bBook.locator('#comments textarea[name="text"]').inputValue(), '');
    // the quote link leads to the parent
    await pages.anonBook.bringToFront();
    await item(pages.anonBook, replyText).locator('.comment-quote a').click();
    assert.equal(await pages.anonBook.evaluate(() => document.activeElement?.dataset.id), parentId);
  });

  const editedText = `book comment ${tag} 1 (edited)`;
  await step('edit: A edits its own comment; "edited" and the new text show live everywhere; B cannot edit it', async () => {
    assert.equal(await item(pages.bBook, parentText).locator('[data-action="edit"]').count(), 0, 'no Edit for others');
    assert.equal(await item(pages.bBook, parentText).locator('[data-action="delete"]').count(), 0, 'no Delete for others');
    assert.equal(await item(pages.anonBook, parentText).locator('[data-action="edit"], [data-action="delete"]').count(), 0);
    await pages.aBook.bringToFront();
    const li = item(pages.aBook, parentText);
    await li.locator('[data-action="edit"]').click();
    const box = pages.aBook.locator('#comments .comment-edit-text');
    await box.waitFor({ state: 'visible', timeout: 2000 });
    assert.equal(await box.inputValue(), parentText);
    await box.fill(editedText);
    const started = Date.now();
    await box.press('Enter');
    for (const [name, p] of Object.entries(bookWindows)) {
      await until(p, `${name}: edited text`, (t) => [...document.querySelectorAll('#comments .comment')]
        .some((e) => e.querySelector('.comment-text')?.textContent === t && !e.querySelector('.comment-edited')?.hidden), editedText, LIVE_MS + 500);
    }
    console.log(`# edit visible in every book window ${Date.now() - started} ms after Enter`);
    assert.equal(await pages.aBook.locator('#comments .comment-edit-text').count(), 0, 'edit box closed');
    // the reply's quote follows the edit
    await until(pages.bBook, 'quote follows the edit', (t) => [...document.querySelectorAll('#comments .comment-quote-text')].some((e) => e.textContent.includes(t)), editedText);
  });

  await step('react: counts change live everywhere, own reactions highlighted; signed-out readers are invited to sign in', async () => {
    await pages.bBook.bringToFront();
    const add = item(pages.bBook, editedText).locator('[data-action="toggle-picker"]');
    await add.focus();
    await pages.bBook.keyboard.press('Enter');
    assert.equal(await add.getAttribute('aria-expanded'), 'true');
    // the picker's first button (👍) has the focus: the keyboard reacts
    assert.equal(await pages.bBook.evaluate(() => document.activeElement?.dataset.emoji), '👍');
    await pages.bBook.keyboard.press('Enter');
    for (const p of Object.values(bookWindows)) await waitReactions(p, editedText, { '👍': 1 });
    assert.deepEqual(await reactionsOf(pages.bBook, editedText), { '👍': [1, true] }, 'B: own highlighted');
    assert.deepEqual(await reactionsOf(pages.aBook, editedText), { '👍': [1, false] }, 'A: not A\'s');
    await pages.aBook.bringToFront();
    await item(pages.aBook, editedText).locator('.reaction[data-emoji="👍"]').click();
    await item(pages.aBook, editedText).locator('[data-action="toggle-picker"]').click();
    await item(pages.aBook, editedText).locator('.reaction-choice[data-emoji="🎉"]').click();
    for (const p of Object.values(bookWindows)) await waitReactions(p, editedText, { '👍': 2, '🎉': 1 });
    assert.deepEqual(await reactionsOf(pages.aBook, editedText), { '👍': [2, true], '🎉': [1, true] });
    assert.deepEqual(await reactionsOf(pages.bBook, editedText), { '👍': [2, true], '🎉': [1, false] });
    // B takes its 👍 back
    await pages.bBook.bringToFront();
    await item(pages.bBook, editedText).locator('.reaction[data-emoji="👍"]').click();
    for (const p of Object.values(bookWindows)) await waitReactions(p, editedText, { '👍': 1, '🎉': 1 });
    assert.deepEqual(await reactionsOf(pages.bBook, editedText), { '👍': [1, false], '🎉': [1, false] });
    // signed out: an invitation, nothing changes
    await pages.anonBook.bringToFront();
    await item(pages.anonBook, editedText).locator('.reaction[data-emoji="👍"]').click();
    const hint = item(pages.anonBook, editedText).locator('.comment-signin-hint');
    await hint.waitFor({ state: 'visible', timeout: 2000 });
    assert.match(await hint.textContent(), /Sign in to react/);
    assert.equal(await hint.locator('a').getAttribute('href'), '/view/user/login');
    await item(pages.anonBook, replyText).locator('[data-action="reply"]').click();
    assert.match(await item(pages.anonBook, replyText).locator('.comment-signin-hint').textContent(), /Sign in to reply/);
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(await reactionsOf(pages.aBook, editedText), { '👍': [1, true], '🎉': [1, true] });
  });

  await step('times: relative, exact time on hover in the reader\'s time zone', async () => {
    assert.equal(await item(pages.aBook, editedText).locator('time').textContent(), 'just now');
    // demo comment of book 1, 2024-02-02T09:42:10.250Z: 10:42 in Berlin, 18:42 in Tokyo
    const demo = (p) => p.evaluate(() => {
      const t = document.querySelector('#comments time[datetime="2024-02-02T09:42:10.250Z"]');
      return t ? { text: t.textContent, title: t.title } : null;
    });
    if (mode !== 'mock' || (await demo(pages.aBook))) {
      const a = await demo(pages.aBook);
      const b = await demo(pages.bBook);
      assert.ok(a && b, 'the demo comment is on the page');
      assert.match(a.title, /2 February 2024.*10:42:10/, `Berlin: ${a.title}`);
      assert.match(b.title, /2 February 2024.*18:42:10/, `Tokyo: ${b.title}`);
      assert.match(a.text, /2 Feb 2024, 10:42/);
    }
  });

  await step('delete: A deletes its comment after a confirmation; it vanishes everywhere, the reply stays with a "deleted" quote', async () => {
    await pages.aBook.bringToFront();
    const li = item(pages.aBook, editedText);
    await li.locator('[data-action="delete"]').click();
    const confirm = li.locator('[data-action="delete-confirm"]');
    await confirm.waitFor({ state: 'visible', timeout: 2000 });
    assert.match(await li.locator('.comment-confirm').textContent(), /Delete this comment\?/);
    // cancel first: nothing happens
    await li.locator('[data-action="delete-cancel"]').click();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await countText(pages.bBook, editedText), 1);
    await li.locator('[data-action="delete"]').click();
    await li.locator('[data-action="delete-confirm"]').click();
    for (const p of Object.values(bookWindows)) await waitGone(p, editedText);
    for (const [name, p] of Object.entries(bookWindows)) {
      assert.equal(await countText(p, replyText), 1, `${name}: the reply stays`);
      await until(p, `${name}: quote says deleted`, (t) => [...document.querySelectorAll('#comments .comment')]
        .some((e) => e.querySelector('.comment-text')?.textContent.includes(t) && e.querySelector('.comment-quote')?.textContent.includes('deleted')), replyText);
    }
  });

  await step('admin: the demo Admin may delete anyone\'s comment; others see no Delete on foreign comments', async () => {
    const ctxAdmin = await browser.newContext({ locale: 'en-GB' });
    contexts.push(ctxAdmin);
    const login = await ctxAdmin.request.post(`${baseB}/api/v1/user/login`, {
      data: { username: 'Admin', password: 'Admin' }, headers: { Origin: baseB, Accept: 'application/json' },
    });
    assert.equal(login.status(), 201, await login.text());
    pages.adminBook = await openLive(ctxAdmin, bookUrlB);
    const li = item(pages.adminBook, replyText);
    await li.locator('[data-action="delete"]').click();
    await li.locator('[data-action="delete-confirm"]').click();
    for (const p of Object.values(bookWindows)) await waitGone(p, replyText);
    await pages.adminBook.close();
    delete pages.adminBook;
  });

  await step('reconnect: edits, reactions and deletions made while offline appear after the reconnect', async () => {
    const keep = `kept ${tag}`;
    const doomed = `doomed ${tag}`;
    for (const t of [keep, doomed]) {
      const w = waitText(pages.bBook, t, 3000);
      await post(pages.aBook, t);
      await w;
    }
    const victim = pages.bBook;
    await ctxB.setOffline(true);
    await victim.evaluate(() => window.__comments.socket && window.__comments.socket.close());
    await victim.waitForFunction(() => window.__comments.state !== 'live', null, { timeout: 5000 });
    // meanwhile, in A's window: edit one, react to it, delete the other, post a new one
    await pages.aBook.bringToFront();
    const li = item(pages.aBook, keep);
    await li.locator('[data-action="edit"]').click();
    await pages.aBook.locator('#comments .comment-edit-text').fill(`${keep} v2`);
    await pages.aBook.locator('#comments .comment-edit-text').press('Enter');
    await until(pages.aBook, 'edit acked', (t) => [...document.querySelectorAll('#comments .comment-text')].some((e) => e.textContent === t), `${keep} v2`);
    await item(pages.aBook, `${keep} v2`).locator('[data-action="toggle-picker"]').click();
    await item(pages.aBook, `${keep} v2`).locator('.reaction-choice[data-emoji="❤️"]').click();
    await waitReactions(pages.aBook, `${keep} v2`, { '❤️': 1 });
    await pages.aBook.bringToFront();
    const gone = item(pages.aBook, doomed);
    await gone.locator('[data-action="delete"]').click();
    await gone.locator('[data-action="delete-confirm"]').click();
    await waitGone(pages.aBook, doomed);
    const fresh = `after the drop ${tag}`;
    await post(pages.aBook, fresh);
    await waitText(pages.aBook, fresh);
    assert.equal(await countText(victim, `${keep} v2`), 0, 'offline window got the edit anyway?');

    await ctxB.setOffline(false);
    await victim.waitForFunction(() => window.__comments.state === 'live', null, { timeout: 15_000 });
    await waitText(victim, fresh, 5000);
    await until(victim, 'edit after reconnect', (t) => [...document.querySelectorAll('#comments .comment')]
      .some((e) => e.querySelector('.comment-text')?.textContent === t && !e.querySelector('.comment-edited')?.hidden), `${keep} v2`, 5000);
    await waitReactions(victim, `${keep} v2`, { '❤️': 1 }, 5000);
    await waitGone(victim, doomed, 5000);
    assert.deepEqual(await seqsOf(victim), await seqsOf(pages.aBook), 'same comments as A after the reconnect');
  });

  await step('"new comments ↓" marker when comments arrive while scrolled away', async () => {
    const p = pages.bBook;
    await p.setViewportSize({ width: 900, height: 420 });
    // comments that arrived earlier below the fold (the reconnect's) are seen once scrolled to
    await p.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
    await until(p, 'earlier unseen comments seen', () => !document.querySelector('#comments .comments-new-marker:not([hidden])'), null, 2000);
    await p.evaluate(() => window.scrollTo(0, 0));
    await p.waitForFunction(() => {
      const items = document.querySelectorAll('#comments .comment-list > .comment');
      const last = items[items.length - 1];
      return last && last.getBoundingClientRect().top > window.innerHeight;
    }, null, { timeout: 2000 });
    const text = `while away ${tag}`;
    const w = waitText(p, text);
    await post(pages.aBook, text);
    await w;
    const marker = p.locator('#comments .comments-new-marker');
    await marker.waitFor({ state: 'visible', timeout: 2000 });
    await p.bringToFront();
    assert.match(await marker.textContent(), /new comments ↓/);
    assert.match(await marker.getAttribute('aria-label'), /1 new comment/);
    await marker.click();
    await marker.waitFor({ state: 'hidden', timeout: 2000 });
    const inView = await p.evaluate((t) => {
      const e = [...document.querySelectorAll('#comments .comment')].find((x) => x.querySelector('.comment-text')?.textContent === t);
      const r = e.getBoundingClientRect();
      return r.top >= 0 && r.bottom <= window.innerHeight + 1;
    }, text);
    assert.ok(inView, 'the marker scrolled to the new comment');
    // the author's own window never shows the marker
    assert.equal(await pages.aBook.locator('#comments .comments-new-marker:visible').count(), 0);
  });

  await step('every control is labelled and keyboard reachable', async () => {
    for (const [name, p] of Object.entries(bookWindows)) {
      const bad = await p.evaluate(() => [...document.querySelectorAll('#comments button, #comments a, #comments textarea')]
        .filter((e) => e.offsetParent !== null)
        .filter((e) => {
          const label = e.getAttribute('aria-label') || e.textContent.trim()
            || (e.id && document.querySelector(`label[for="${e.id}"]`)?.textContent.trim());
          return !label || e.tabIndex < 0;
        })
        .map((e) => e.outerHTML.slice(0, 120)));
      assert.deepEqual(bad, [], `${name}: unlabelled or unreachable controls`);
    }
  });

  await step('roles and names: the controls are found by role and accessible name, Tab reaches them', async () => {
    const p = pages.aBook;
    await p.bringToFront();
    const keep = `kept ${tag} v2`;
    const li = item(p, keep);
    // by role and name, as assistive technology sees them
    assert.equal(await p.getByRole('textbox', { name: 'Your comment' }).count(), 1, 'the comment box is labelled');
    assert.equal(await p.getByRole('list', { name: 'Comments' }).count(), 1);
    assert.equal(await li.getByRole('button', { name: `Reply to ${nameA}` }).count(), 1);
    assert.equal(await li.getByRole('button', { name: 'Edit your comment' }).count(), 1);
    assert.equal(await li.getByRole('button', { name: 'Delete your comment' }).count(), 1);
    assert.equal(await li.getByRole('button', { name: 'heart: 1, including yours' }).getAttribute('aria-pressed'), 'true');
    assert.equal(await li.getByRole('button', { name: 'Add a reaction' }).getAttribute('aria-expanded'), 'false');
    assert.equal(await p.locator('#comments .comments-typing').getAttribute('aria-live'), 'polite');
    assert.equal(await p.locator('#comments .comments-status').getAttribute('role'), 'status');
    // Tab from the comment's Reply button walks through its controls in order
    await li.getByRole('button', { name: `Reply to ${nameA}` }).focus();
    const walked = [];
    for (let i = 0; i < 2; i += 1) {
      await p.keyboard.press('Tab');
      walked.push(await p.evaluate(() => document.activeElement?.getAttribute('aria-label') || document.activeElement?.textContent));
    }
    assert.deepEqual(walked, ['Edit your comment', 'Delete your comment'], 'Tab order of a comment\'s actions');
    // the picker opens from the keyboard and its choices are labelled buttons in a named group
    await li.getByRole('button', { name: 'Add a reaction' }).focus();
    await p.keyboard.press('Enter');
    const group = li.getByRole('group', { name: 'Choose a reaction' });
    await group.waitFor({ state: 'visible', timeout: 2000 });
    assert.deepEqual(await group.getByRole('button').evaluateAll((bs) => bs.map((b) => b.getAttribute('aria-label'))),
      ['React with thumbs up', 'React with heart', 'React with laughing', 'React with surprised', 'React with sad', 'React with celebrate']);
    await p.keyboard.press('Escape');
    await group.waitFor({ state: 'hidden', timeout: 2000 });
  });

  await step('server-rendered page (no JavaScript) shows replies, "edited", reactions and readers', async () => {
    // a reply to the edited, reacted comment, so that the HTML has all of it
    const keep = `kept ${tag} v2`;
    await pages.bBook.bringToFront();
    await item(pages.bBook, keep).locator('[data-action="reply"]').click();
    const r = `server reply ${tag}`;
    const w = waitText(pages.aBook, r);
    await post(pages.bBook, r);
    await w;
    const res = await ctxAnon.request.get(bookUrl);
    assert.equal(res.status(), 200);
    const html = await res.text();
    const id = await item(pages.aBook, keep).getAttribute('data-id');
    assert.ok(html.includes(`data-reply-to="${id}"`), 'reply marked in HTML');
    assert.match(html, /class="comment-quote/);
    assert.match(html, /class="comment-edited/);
    assert.match(html, /❤️ <span class="reaction-count">1<\/span>|❤️<\/span> <span class="reaction-count">1<\/span>/);
    assert.match(html, /\d+ reading now/);
    // and as a reader without JavaScript sees it
    const ctxNoJs = await browser.newContext({ javaScriptEnabled: false, locale: 'en-GB' });
    contexts.push(ctxNoJs);
    const page = await ctxNoJs.newPage();
    pages.noJsBook = page;
    await page.goto(bookUrl);
    const reply = page.locator('#comments .comment', { has: page.locator('.comment-text', { hasText: r }) });
    assert.match(await reply.locator('.comment-quote').innerText(), new RegExp(`${nameA}: ${keep}`), 'quote without JS');
    const kept = page.locator('#comments .comment', { has: page.locator('.comment-text', { hasText: keep }) });
    assert.equal(await kept.locator('.comment-edited').isVisible(), true, '"edited" visible without JS');
    assert.match(await kept.locator('.comment-reactions').innerText(), /❤️\s*1/);
    assert.match(await page.locator('#comments .comments-presence').innerText(),
      mode === 'mock' ? /^\d+ reading now/ : new RegExp(`^\\d+ reading now: .*${nameA}`));
    assert.equal(await page.locator('#comments form.comment-form:visible').count(), 0, 'no form without JS');
  });

  await step('a reply whose parent is not on the page quotes it from the gateway (GET /rooms/{room}/comments/{id})', async () => {
    const p = pages.aBook;
    await p.bringToFront();
    const parent = `far parent ${tag}`;
    await post(p, parent);
    await waitText(p, parent);
    // 50 more comments push the parent out of the latest 50 that a page shows (under the post rate limit)
    await p.evaluate(async (t) => {
      const c = window.__comments.client;
      for (let i = 0; i < 50; i += 1) {
        c.sendFrame({ type: 'post', ref: `filler-${i}`, payload: { room: c.room, text: `filler ${t} ${i}`, clientId: `filler-${t}-${i}` } });
        await new Promise((r) => setTimeout(r, 210));
      }
    }, tag);
    await waitText(p, `filler ${tag} 49`, 10_000);
    await item(p, parent).locator('[data-action="reply"]').click();
    const reply = `far reply ${tag}`;
    await post(p, reply);
    await waitText(p, reply);
    if (mode !== 'mock') {
      // the server-rendered page quotes it too (the library reads it from the gateway)
      const html = await (await ctxAnon.request.get(bookUrl)).text();
      const at = html.indexOf(`>${reply}<`);
      assert.ok(at > 0, 'the reply is in the HTML');
      const li = html.slice(html.lastIndexOf('<li', at), at);
      assert.ok(li.includes(`<span class="comment-quote-text">${parent}</span>`), `server-rendered quote of a far parent: ${li}`);
      assert.ok(!li.includes('comment-quote deleted'), 'not shown as deleted');
    }
    const fresh = await openLive(ctxAnon, bookUrl);
    const failed = [];
    fresh.on('requestfailed', (r) => failed.push(`${r.url()} ${r.failure()?.errorText}`));
    assert.equal(await countText(fresh, parent), 0, 'the parent is not on the new page');
    assert.equal(await countText(fresh, reply), 1);
    try {
      await until(fresh, 'quote of a parent not on the page', (t) => [...document.querySelectorAll('#comments .comment-quote-text')]
        .some((e) => e.textContent.includes(t)), parent, 5000);
    } catch (err) {
      err.message += ` (failed requests: ${JSON.stringify(failed)}; the gateway must answer GET /rooms/{room}/comments/{id} with Access-Control-Allow-Origin)`;
      throw err;
    }
    await fresh.close();
  });
}

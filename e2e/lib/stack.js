// Starts the real stack for the end-to-end test, on free ports:
// - servers: a private redis-server and SecantusDB, counter, two comments-gateway instances and
//   two library instances (library B puts gateway B's URL in its pages, so windows opened through
//   it read and write through the other gateway instance: everything crosses instances via Redis);
// - embedded: the `stack` binary alone (the README's first command: all three services in one
//   process, embedded stores, in-process fan-out).
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { initDbCalls } from './init-db.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const E2E_DIR = path.join(REPO, 'e2e');
export const RESULTS_DIR = path.join(E2E_DIR, 'test-results');
export const SCREENSHOT_DIR = path.join(E2E_DIR, 'screenshots');
export const BINARIES = ['counter', 'library', 'comments-gateway', 'stack'];

/** Where cargo put the binaries: $CARGO_TARGET_DIR (or target/) / $E2E_PROFILE (default debug). */
export function binaryPaths() {
  const targetDir = process.env.CARGO_TARGET_DIR
    ? path.resolve(REPO, process.env.CARGO_TARGET_DIR)
    : path.join(REPO, 'target');
  const profile = process.env.E2E_PROFILE || 'debug';
  const paths = Object.fromEntries(BINARIES.map((b) => [b, path.join(targetDir, profile, b)]));
  const missing = Object.values(paths).filter((p) => !existsSync(p));
  return { paths, missing };
}

export function secantusPath() {
  const venv = process.env.SECANTUS_VENV || path.join(os.homedir(), '.cache', 'secantus-venv');
  return path.join(venv, 'bin', 'secantusd-py');
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function portOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

/** A child process whose output goes to a log file under e2e/test-results/. */
class Proc {
  constructor(name, cmd, args, { env = {}, cwd = REPO, logDir }) {
    this.name = name;
    this.logPath = path.join(logDir, `${name}.log`);
    const log = createWriteStream(this.logPath);
    this.child = spawn(cmd, args, {
      cwd,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout.pipe(log);
    this.child.stderr.pipe(log);
    this.exited = null;
    this.exitPromise = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exited = { code, signal };
        resolve(this.exited);
      });
      this.child.once('error', (err) => {
        this.exited = { code: null, signal: null, error: String(err) };
        resolve(this.exited);
      });
    });
  }

  logTail(lines = 40) {
    try {
      return readFileSync(this.logPath, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  async stop(graceMs = 5000) {
    if (this.exited) return this.exited;
    this.child.kill('SIGTERM');
    const t = await Promise.race([this.exitPromise, sleep(graceMs).then(() => null)]);
    if (t) return t;
    this.child.kill('SIGKILL');
    return this.exitPromise;
  }
}

async function waitFor(what, proc, check, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (proc.exited) {
      throw new Error(`${proc.name} exited early (${JSON.stringify(proc.exited)}) while waiting for ${what}:\n${proc.logTail()}`);
    }
    try {
      if (await check()) return;
    } catch (err) {
      last = String(err);
    }
    await sleep(100);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} ${last}:\n${proc.logTail()}`);
}

async function httpOk(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  return res.status === 200;
}

/**
 * Starts everything. mode 'servers': private redis-server + SecantusDB, MONGO_URL/REDIS_URL set,
 * two gateways and two libraries (`libraryUrl` on gateway A, `libraryUrlB` on gateway B);
 * mode 'embedded': the `stack` binary with its embedded stores (it loads the demo data).
 * beforeServices({mongoBase, mongoUrl, redisUrl, db}) runs once the stores are up.
 */
export async function startStack({ mode = 'servers', label = mode, beforeServices = null } = {}) {
  const logDir = path.join(RESULTS_DIR, label);
  mkdirSync(logDir, { recursive: true });
  if (mode === 'mock') return startMock(logDir);
  const { paths, missing } = binaryPaths();
  if (missing.length) throw new Error(`missing binaries: ${missing.join(', ')}`);
  const tmp = mkdtempSync(path.join(os.tmpdir(), `library-e2e-${label}-`));
  const procs = [];
  const stack = {
    mode,
    procs,
    tmp,
    logDir,
    async stop() {
      // services first (they drain), then the stores
      for (const p of [...procs].reverse()) await p.stop();
      rmSync(tmp, { recursive: true, force: true });
    },
    logs() {
      return procs.map((p) => `----- ${p.name} (${p.logPath})\n${p.logTail(30)}`).join('\n');
    },
  };
  try {
    // Guards that are not what this test is about are off: development secrets allowed, no sign-in
    // throttling, no per-address connection cap (every browser window comes from 127.0.0.1).
    const common = {
      RUST_LOG: process.env.E2E_RUST_LOG || 'info',
      LOG_FORMAT: 'pretty',
      NO_COLOR: '1',
      APP_ENV: 'development',
      AUTH_THROTTLE: 'off',
      MAX_CONNS_PER_IP: '0',
    };
    const secret = randomBytes(32).toString('hex');
    let redisUrl = '';
    let mongoBase = '';
    if (mode === 'servers') {
      const redisPort = await freePort();
      const redis = new Proc('redis', 'redis-server', [
        '--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no',
      ], { logDir });
      procs.push(redis);
      const mongoPort = await freePort();
      const mongo = new Proc('secantusdb', secantusPath(), [
        '--host', '127.0.0.1', '--port', String(mongoPort), '--storage-path', ':memory:', '--log-level', 'WARNING',
      ], { logDir });
      procs.push(mongo);
      await waitFor('redis', redis, () => portOpen(redisPort), 10_000);
      await waitFor('SecantusDB', mongo, () => portOpen(mongoPort), 20_000);
      redisUrl = `redis://127.0.0.1:${redisPort}`;
      mongoBase = `mongodb://127.0.0.1:${mongoPort}`;
    }
    const mongoUrl = (db) => (mongoBase ? `${mongoBase}/${db}?directConnection=true` : '');
    const db = `e2e_${randomBytes(4).toString('hex')}`;
    // e.g. seed the database the way the compose file does, before any service touches it
    if (beforeServices) await beforeServices({ mongoBase, mongoUrl: mongoUrl(db), redisUrl, db });

    const dataDir = path.join(tmp, 'data');
    mkdirSync(dataDir, { recursive: true });
    const demoDir = path.join(REPO, 'data', 'demo');
    const gatewayEnv = {
      AUTH_TOKEN_SECRET: secret,
      ADMIN_TOKEN: 'e2e-admin-token',
      DEMO_DIR: demoDir,
      POST_BURST: '20',
      POST_RATE_PER_SEC: '5',
    };
    const sessionSecret = randomBytes(64).toString('hex');

    if (mode === 'embedded') {
      // The README's first command: one process, nothing else.
      const [counterPort, libraryPort, gatewayPort] = [await freePort(), await freePort(), await freePort()];
      const all = new Proc('stack', paths.stack, [], {
        logDir,
        env: {
          ...common,
          ...gatewayEnv,
          COUNTER_PORT: String(counterPort),
          LIBRARY_PORT: String(libraryPort),
          GATEWAY_PORT: String(gatewayPort),
          PUBLIC_HOST: '127.0.0.1',
          DATA_DIR: dataDir,
          AUTH_SESSION_SECRET: sessionSecret,
          REDIS_URL: '',
          MONGO_URL: '',
        },
      });
      procs.push(all);
      const libraryUrl = `http://127.0.0.1:${libraryPort}`;
      const gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
      await waitFor('stack: counter /healthz', all, () => httpOk(`http://127.0.0.1:${counterPort}/healthz`), 60_000);
      await waitFor('stack: comments-gateway /readyz', all, () => httpOk(`${gatewayUrl}/readyz`), 30_000);
      await waitFor('stack: library /readyz', all, () => httpOk(`${libraryUrl}/readyz`), 30_000);
      Object.assign(stack, {
        libraryUrl,
        libraryUrlB: libraryUrl,
        gatewayUrl,
        gatewayPublicUrl: `ws://127.0.0.1:${gatewayPort}/ws`,
        counterUrl: `http://127.0.0.1:${counterPort}`,
        db,
        instances: 1,
      });
      return stack;
    }

    const counterPort = await freePort();
    const counterUrl = `http://127.0.0.1:${counterPort}`;
    const counter = new Proc('counter', paths.counter, [], {
      logDir,
      env: { ...common, PORT: String(counterPort), REDIS_URL: redisUrl, DATA_DIR: dataDir },
    });
    procs.push(counter);
    // Two gateway instances on one Redis and one MongoDB, and a library in front of each.
    const gateways = [];
    const libraries = [];
    for (const name of ['a', 'b']) {
      const gatewayPort = await freePort();
      const gateway = new Proc(`comments-gateway-${name}`, paths['comments-gateway'], [], {
        logDir,
        env: {
          ...common,
          ...gatewayEnv,
          PORT: String(gatewayPort),
          REDIS_URL: redisUrl,
          MONGO_URL: mongoUrl(db),
          DATA_DIR: path.join(dataDir, `gateway-${name}`),
        },
      });
      procs.push(gateway);
      gateways.push({ proc: gateway, url: `http://127.0.0.1:${gatewayPort}`, publicUrl: `ws://127.0.0.1:${gatewayPort}/ws` });
    }
    await waitFor('counter /healthz', counter, () => httpOk(`${counterUrl}/healthz`), 30_000);
    for (const g of gateways) await waitFor(`${g.proc.name} /readyz`, g.proc, () => httpOk(`${g.url}/readyz`), 30_000);
    for (const [i, name] of ['a', 'b'].entries()) {
      const libraryPort = await freePort();
      const library = new Proc(`library-${name}`, paths.library, [], {
        logDir,
        env: {
          ...common,
          PORT: String(libraryPort),
          MONGO_URL: mongoUrl(db),
          COUNTER_URL: counterUrl,
          GATEWAY_URL: gateways[i].url,
          GATEWAY_PUBLIC_URL: gateways[i].publicUrl,
          AUTH_TOKEN_SECRET: secret,
          AUTH_SESSION_SECRET: sessionSecret,
          DATA_DIR: path.join(dataDir, `library-${name}`),
          DEMO_DIR: demoDir,
        },
      });
      procs.push(library);
      libraries.push({ proc: library, url: `http://127.0.0.1:${libraryPort}` });
      // one at a time: the first start of a library on an empty database creates its indexes
      await waitFor(`${library.name} /readyz`, library, () => httpOk(`${libraries[i].url}/readyz`), 30_000);
    }
    Object.assign(stack, {
      libraryUrl: libraries[0].url,
      libraryUrlB: libraries[1].url,
      gatewayUrl: gateways[0].url,
      gatewayUrlB: gateways[1].url,
      gatewayPublicUrl: gateways[0].publicUrl,
      counterUrl,
      db,
      instances: 2,
    });
    return stack;
  } catch (err) {
    const logs = stack.logs();
    await stack.stop();
    err.message += `\n${logs}`;
    throw err;
  }
}

/**
 * Seeds a MongoDB-compatible server with data/mongo/init-db.js (as the compose file's mongo image
 * does), into database `db`: init-db.js is evaluated under node, the documents are written with
 * pymongo from the SecantusDB venv (or $SEED_PYTHON).
 */
export function seedMongo(mongoBase, db) {
  const python = process.env.SEED_PYTHON || path.join(path.dirname(secantusPath()), 'python');
  const calls = initDbCalls(path.join(REPO, 'data', 'mongo', 'init-db.js'));
  const r = spawnSync(python, [path.join(E2E_DIR, 'lib', 'seed_mongo.py'), mongoBase, db], {
    input: JSON.stringify(calls),
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.status !== 0) throw new Error(`seeding MongoDB from init-db.js failed (${python}): ${r.error || ''}\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

/** The contract mock of e2e/mock/mock-stack.js (library + gateway in one node process). */
async function startMock(logDir) {
  const [libraryPort, gatewayPort] = [await freePort(), await freePort()];
  const proc = new Proc('mock-stack', process.execPath, [path.join(E2E_DIR, 'mock', 'mock-stack.js')], {
    logDir,
    env: { LIBRARY_PORT: String(libraryPort), GATEWAY_PORT: String(gatewayPort) },
  });
  const libraryUrl = `http://127.0.0.1:${libraryPort}`;
  const gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
  const stack = {
    mode: 'mock',
    procs: [proc],
    logDir,
    libraryUrl,
    gatewayUrl,
    gatewayPublicUrl: `ws://127.0.0.1:${gatewayPort}/ws`,
    async stop() { await proc.stop(); },
    logs() { return `----- mock-stack\n${proc.logTail(30)}`; },
  };
  try {
    await waitFor('mock library', proc, () => httpOk(`${libraryUrl}/readyz`), 10_000);
    await waitFor('mock gateway', proc, () => httpOk(`${gatewayUrl}/readyz`), 10_000);
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return stack;
}

/** True when chromium can be started (used for a clear failure message, not to skip). */
export function chromiumPath() {
  const p = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
  if (!existsSync(p)) return null;
  const r = spawnSync(p, ['--version'], { encoding: 'utf8', timeout: 20_000 });
  return r.status === 0 ? p : null;
}

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

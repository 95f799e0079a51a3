"""The compose stack without Docker: the real binaries wired exactly as docker-compose.yml wires
them, then the seed scenario and a rolling-restart drill over HTTP and WebSocket.

Each process gets the environment its container would get: the Dockerfile target's ENV, then
compose's `environment:` interpolated from .env.example with its secret placeholders replaced
by random values (as a user who edited .env has them); compose host names become 127.0.0.1 and
every port a free one (the two gateway replicas get one each), /app paths become this checkout
(/app/.data a temporary folder), and MongoDB URLs get `directConnection=true` for the test server.
Redis runs with the compose `command`, MongoDB is SecantusDB seeded from data/mongo/init-db.js
(as the mongo image's /docker-entrypoint-initdb.d would). gateway-proxy (nginx) is not run: the
test's clients pick a replica themselves and the library's GATEWAY_URL goes to the first one.

Runs only with DEPLOY_TESTS=1 (scripts/test.sh), in the venv of scripts/test-deps.sh
(~/.cache/deploy-test-venv: websockets, pymongo, PyYAML); it builds the binaries with
`cargo build -p counter -p library -p comments-gateway` (CARGO_TARGET_DIR respected).
"""

import asyncio
import base64
import datetime
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlencode, urlparse, urlunparse

import test_deploy as deploy

ROOT = deploy.ROOT
ENABLED = os.environ.get("DEPLOY_TESTS") == "1"
SECANTUS = Path(os.environ.get("SECANTUS_VENV", Path.home() / ".cache" / "secantus-venv")) / "bin" / "secantusd-py"
DRILL_BUDGET_S = 100


def free_port(_taken=set()):
    """A free port below the ephemeral range, so no outgoing connection (ours, the services' to
    Redis/MongoDB, other test runs') takes it between this check and the service's bind."""
    import random

    low, _ = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    for _ in range(200):
        port = random.randint(20000, max(20001, min(low, 32768) - 1))
        if port in _taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
        _taken.add(port)
        return port
    raise AssertionError("no free port")


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def http(method, url, body=None, cookie=None, timeout=10):
    """(status, headers, body bytes) of one request; JSON bodies for dicts."""
    data, headers = None, {}
    if isinstance(body, dict):
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    if cookie:
        headers["Cookie"] = cookie
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def mint_token(secret, sub, name, role="user", ttl=3600):
    """An HS256 token as the library issues it (claims of shared_proto::Claims)."""

    def b64(raw):
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"sub": sub, "name": name, "role": role, "iat": now, "exp": now + ttl}).encode())
    signing = header + b"." + claims
    sig = b64(hmac.new(secret.encode(), signing, hashlib.sha256).digest())
    return (signing + b"." + sig).decode()


class Proc:
    """One service process, restartable with the same command and environment."""

    def __init__(self, name, argv, env, logdir):
        self.name, self.argv, self.env = name, argv, env
        self.log_path = Path(logdir) / f"{name}.log"
        self.popen = None
        self.starts = 0

    def start(self):
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n==== start {self.starts}: {' '.join(self.argv)}\n".encode())
        log.flush()
        self.popen = subprocess.Popen(
            self.argv, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        return self

    def terminate(self, timeout=30):
        """SIGTERM; the exit code (None if it had to be killed)."""
        if self.popen is None or self.popen.poll() is not None:
            return self.popen.returncode if self.popen else None
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            return None

    def tail(self, n=40):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class ComposeStack:
    """The compose services as local processes."""

    def __init__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="deploy-stack-"))
        self.procs = {}
        self.compose = deploy.load_compose()
        # .env as a user who followed .env.example has it: real random secrets in place of the
        # placeholders (which the services refuse).
        self.example_env = deploy.read_env_file()
        self.env_file = dict(self.example_env)
        for name in deploy.SECRETS:
            self.env_file[name] = secrets.token_hex(32)
        self.redis_port = free_port()
        self.mongo_port = free_port()
        self.ports = {
            "counter": free_port(),
            "library": free_port(),
            "comments-gateway-1": free_port(),
            "comments-gateway-2": free_port(),
        }
        replicas = self.compose["services"]["comments-gateway"]["deploy"]["replicas"]
        assert replicas == 2, "the test runs the two replicas compose asks for"
        # compose host:port -> where that service listens here
        self.hosts = {
            ("storage_redis", 6379): self.redis_port,
            ("storage_mongo", 27017): self.mongo_port,
            ("counter", 3001): self.ports["counter"],
            ("gateway-proxy", 3003): self.ports["comments-gateway-1"],
            ("comments-gateway", 3003): self.ports["comments-gateway-1"],
            # the browser's view: gateway-proxy published on the host
            ("localhost", 3003): self.ports["comments-gateway-1"],
        }
        target = os.environ.get("CARGO_TARGET_DIR") or str(ROOT / "target")
        self.bin = (ROOT / target) / "debug"

    # -- environment ------------------------------------------------------------------------

    def rewrite(self, key, value, instance):
        if value.startswith("/app/.data"):
            return str(self.tmp / instance / "data") + value[len("/app/.data"):]
        if value.startswith("/app/"):
            return str(ROOT / value[len("/app/"):])
        u = urlparse(value)
        if u.scheme in ("redis", "rediss", "mongodb", "http", "https", "ws", "wss") and u.hostname:
            port = self.hosts.get((u.hostname, u.port))
            if port is None:
                raise AssertionError(f"{instance}: {key}={value} names no compose service")
            netloc = f"127.0.0.1:{port}"
            query = u.query
            if u.scheme == "mongodb":
                query = (query + "&" if query else "") + "directConnection=true"
            return urlunparse((u.scheme, netloc, u.path, u.params, query, u.fragment))
        return value

    def service_env(self, service, instance, env_file=None):
        env = deploy.image_environment(service)
        env.update(deploy.compose_environment(service, env_file or self.env_file, self.compose))
        env = {k: self.rewrite(k, str(v), instance) for k, v in env.items()}
        env["PORT"] = str(self.ports[instance])
        # In the container this is all the process sees (plus PATH and HOME).
        env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
        env["HOME"] = str(self.tmp)
        (self.tmp / instance / "data").mkdir(parents=True, exist_ok=True)
        return env

    # -- processes --------------------------------------------------------------------------

    def build(self):
        cmd = ["cargo", "build", "-p", "counter", "-p", "library", "-p", "comments-gateway"]
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed:\n{r.stderr[-4000:]}")

    def start_storage(self):
        redis = self.compose["services"]["storage_redis"]["command"]
        assert redis[0] == "redis-server"
        rdir = self.tmp / "redis"
        rdir.mkdir()
        argv = ["redis-server", *redis[1:], "--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir", str(rdir)]
        self.procs["storage_redis"] = Proc("storage_redis", argv, dict(os.environ), self.tmp).start()
        mdir = self.tmp / "mongo"
        mdir.mkdir()
        argv = [str(SECANTUS), "--host", "127.0.0.1", "--port", str(self.mongo_port), "--storage-path", str(mdir), "--log-level", "WARNING"]
        self.procs["storage_mongo"] = Proc("storage_mongo", argv, dict(os.environ), self.tmp).start()
        for port in (self.redis_port, self.mongo_port):
            self.wait_port(port, 30)

    def seed_mongo(self):
        """data/mongo/init-db.js, run by node against a recording `db` as mongosh would
        (e2e/lib/init-db.js), applied with pymongo: what the mongo image's initdb step does."""
        from bson import Int64, ObjectId
        from pymongo import MongoClient

        node = shutil.which("node")
        if not node:
            raise AssertionError("node is needed to run data/mongo/init-db.js (scripts/test-deps.sh installs it)")
        runner = (ROOT / "e2e" / "lib" / "init-db.js").as_uri()
        script = f"import {{ initDbCalls }} from '{runner}'; process.stdout.write(JSON.stringify(initDbCalls(process.argv[1])));"
        r = subprocess.run([node, "--input-type=module", "-e", script, str(ROOT / "data" / "mongo" / "init-db.js")],
                           capture_output=True, text=True, check=True)
        calls = json.loads(r.stdout)
        convert = {
            "objectId": ObjectId,
            "long": lambda v: Int64(int(v)),
            "int": int,
            "date": lambda v: datetime.datetime.fromisoformat(v.replace("Z", "+00:00")),
        }

        def bson(v):
            if isinstance(v, dict) and "$type" in v:
                return convert[v["$type"]](v["value"])
            if isinstance(v, dict):
                return {k: bson(x) for k, x in v.items()}
            if isinstance(v, list):
                return [bson(x) for x in v]
            return v

        client = MongoClient(f"mongodb://127.0.0.1:{self.mongo_port}/", directConnection=True, serverSelectionTimeoutMS=5000)
        db = None
        for call in calls:
            if call["op"] == "use":
                db = client[call["db"]]
            elif call["op"] == "createIndex":
                db[call["coll"]].create_index(list(call["keys"].items()), **call["opts"])
            elif call["op"] == "insert":
                db[call["coll"]].insert_many([bson(d) for d in call["docs"]])
        counts = {n: client["library"][n].count_documents({}) for n in ("users", "books", "comments")}
        client.close()
        return counts

    def start_service(self, service, instance=None):
        instance = instance or service
        proc = Proc(instance, [str(self.bin / service)], self.service_env(service, instance), self.tmp)
        self.procs[instance] = proc.start()
        return proc

    def restart(self, instance, wait=True):
        proc = self.procs[instance]
        code = proc.terminate()
        proc.start()
        if wait:
            self.wait_ready(instance)
        return code

    def url(self, instance, path=""):
        return f"http://127.0.0.1:{self.ports[instance]}{path}"

    def ws_url(self, instance, token=None):
        q = "?" + urlencode({"token": token}) if token else ""
        return f"ws://127.0.0.1:{self.ports[instance]}/ws{q}"

    def wait_port(self, port, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_open(port):
                return
            time.sleep(0.05)
        raise AssertionError(f"port {port} never opened")

    def wait_ready(self, instance, timeout=60):
        proc = self.procs[instance]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise AssertionError(f"{instance} exited with {proc.popen.returncode}:\n{proc.tail()}")
            try:
                status, _, _ = http("GET", self.url(instance, "/readyz"), timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{instance} never became ready:\n{proc.tail()}")

    def stop(self):
        for proc in reversed(list(self.procs.values())):
            proc.terminate(timeout=10)
        if os.environ.get("DEPLOY_KEEP_TMP") != "1":
            shutil.rmtree(self.tmp, ignore_errors=True)


STACK = None


def setUpModule():
    global STACK
    if not ENABLED:
        return
    stack = ComposeStack()
    try:
        stack.build()
        stack.start_storage()
        counts = stack.seed_mongo()
        assert counts == {"users": 3, "books": 4, "comments": 5}, counts
        stack.start_service("counter")
        stack.start_service("comments-gateway", "comments-gateway-1")
        stack.start_service("comments-gateway", "comments-gateway-2")
        stack.start_service("library")
        for instance in ("counter", "comments-gateway-1", "comments-gateway-2", "library"):
            stack.wait_ready(instance)
    except BaseException:
        for p in stack.procs.values():
            sys.stderr.write(f"--- {p.name}\n{p.tail()}\n")
        stack.stop()
        raise
    STACK = stack


def tearDownModule():
    if STACK is not None:
        STACK.stop()


# ---------------------------------------------------------------------------------------------
# A WebSocket client that keeps every frame
# ---------------------------------------------------------------------------------------------


class WsClient:
    def __init__(self, name):
        self.name = name
        self.frames = []
        self.changed = asyncio.Event()
        self.ws = None
        self.reader = None
        self.close_code = None

    async def connect(self, url):
        from websockets.asyncio.client import connect

        self.ws = await connect(url, ping_interval=None, open_timeout=5, close_timeout=2)
        self.close_code = None
        self.reader = asyncio.create_task(self._read())
        return await self.next_of("welcome")

    async def _read(self):
        from websockets.exceptions import ConnectionClosed

        ws = self.ws
        try:
            async for raw in ws:
                self.frames.append(json.loads(raw))
                self.changed.set()
        except ConnectionClosed:
            pass
        self.close_code = ws.protocol.close_rcvd.code if ws.protocol.close_rcvd else 1006
        self.changed.set()

    async def send(self, type_, payload, ref=None):
        frame = {"type": type_, "payload": payload}
        if ref:
            frame["ref"] = ref
        await self.ws.send(json.dumps(frame))

    async def wait(self, pred, timeout=10, what="frame"):
        deadline = time.monotonic() + timeout
        while True:
            for f in self.frames:
                if pred(f):
                    return f
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: no {what} in {timeout}s; got {self.frames[-5:]}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def next_of(self, type_, timeout=10):
        return await self.wait(lambda f: f["type"] == type_, timeout, type_)

    async def request(self, type_, payload, timeout=10):
        ref = uuid.uuid4().hex[:12]
        await self.send(type_, payload, ref)
        return await self.wait(lambda f: f.get("ref") == ref, timeout, f"reply to {type_}")

    def comments(self, room):
        return [f["payload"] for f in self.frames if f["type"] == "comment" and f["payload"]["room"] == room]

    async def closed(self, timeout=30):
        await asyncio.wait_for(asyncio.shield(self.reader), timeout)
        return self.close_code

    async def close(self):
        if self.ws is not None:
            await self.ws.close()
            await self.reader


def login(base, username, password):
    status, headers, body = http("POST", f"{base}/api/v1/user/login", {"username": username, "password": password})
    if status != 201:
        raise AssertionError(f"login {username}: {status} {body[:300]!r}")
    cookies = [c.split(";", 1)[0] for c in headers.get_all("Set-Cookie") or []]
    assert cookies, "login set no cookie"
    return "; ".join(cookies), json.loads(body)


def token_for(base, cookie):
    status, _, body = http("GET", f"{base}/api/v1/user/token", cookie=cookie)
    assert status == 200, (status, body)
    return json.loads(body)["token"]


@unittest.skipUnless(ENABLED, "set DEPLOY_TESTS=1 (scripts/test.sh does) to run the compose-equivalent stack")
class T1ComposeStack(unittest.TestCase):
    """The seed scenario against the stack as compose wires it."""

    def test_healthchecks_pass_with_the_image_script(self):
        for instance in ("counter", "comments-gateway-1", "comments-gateway-2", "library"):
            env = dict(STACK.procs[instance].env)
            for path in ("/readyz", "/healthz"):
                r = subprocess.run(["bash", str(deploy.HEALTHCHECK), path], env=env, capture_output=True, text=True)
                self.assertEqual(r.returncode, 0, f"{instance} {path}: {r.stderr}")
        r = subprocess.run(["bash", str(deploy.HEALTHCHECK), "/readyz", str(free_port())], capture_output=True)
        self.assertNotEqual(r.returncode, 0, "a closed port must be unhealthy")

    def test_library_refuses_the_unedited_env_example(self):
        """`cp .env.example .env` without editing it: the library exits naming the variable."""
        STACK.ports.setdefault("library-placeholders", free_port())
        env = STACK.service_env("library", "library-placeholders", STACK.example_env)
        r = subprocess.run([str(STACK.bin / "library")], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        out = r.stdout + r.stderr
        self.assertNotEqual(r.returncode, 0, out)
        named = [line for line in out.splitlines() if "ERROR" in line and "AUTH_SESSION_SECRET" in line]
        self.assertEqual(len(named), 1, out)
        self.assertNotIn(STACK.example_env["AUTH_SESSION_SECRET"], out, "the value is never logged")

    def test_first_log_lines_name_the_real_stores(self):
        for instance in ("counter", "comments-gateway-1", "library"):
            head = STACK.procs[instance].log_path.read_text(errors="replace")[:4000].lower()
            self.assertNotIn("embedded store", head, f"{instance} runs embedded:\n{head}")

    def test_seed_scenario(self):
        asyncio.run(asyncio.wait_for(self.seed_scenario(), 120))

    async def seed_scenario(self):
        lib = STACK.url("library")
        env = STACK.procs["library"].env

        # Demo data came from init-db.js through MongoDB.
        status, _, body = http("GET", f"{lib}/api/v1/book")
        self.assertEqual(status, 200)
        books = json.loads(body)
        self.assertEqual([b["id"] for b in books], [1, 2, 3, 4])
        self.assertEqual(books[0]["title"], "Война и мир")
        login(lib, "JD", "JD")

        # Two users sign up and log in through /api/v1 and get gateway tokens.
        tag = uuid.uuid4().hex[:6]
        users = {}
        for who in ("alice", "bob"):
            name = f"{who}_{tag}"
            status, _, body = http("POST", f"{lib}/api/v1/user/signup",
                                   {"username": name, "fullname": who.title(), "email": f"{name}@example.com", "password": f"pw-{name}"})
            self.assertEqual(status, 201, body)
            cookie, _ = login(lib, name, f"pw-{name}")
            users[who] = (name, cookie, token_for(lib, cookie))

        # The book page: counted through counter, comments read from the gateway, the browser's
        # WebSocket URL verbatim.
        status, _, page = http("GET", f"{lib}/view/book/1")
        self.assertEqual(status, 200)
        page = page.decode()
        self.assertIn(env["GATEWAY_PUBLIC_URL"], page)
        self.assertIn("Главы про Аустерлиц", page)
        status, _, body = http("GET", f"{STACK.url('counter')}/counter/1")
        views = json.loads(body)["count"]
        self.assertGreaterEqual(views, 1)

        # Alice on replica 1, Bob and a signed-out reader on replica 2.
        alice, bob, carol = WsClient("alice"), WsClient("bob"), WsClient("carol")
        w = await alice.connect(STACK.ws_url("comments-gateway-1", users["alice"][2]))
        self.assertEqual(w["payload"]["user"]["id"], users["alice"][0])
        await bob.connect(STACK.ws_url("comments-gateway-2", users["bob"][2]))
        w = await carol.connect(STACK.ws_url("comments-gateway-2"))
        self.assertIsNone(w["payload"]["user"])
        for c in (alice, bob):
            s = await c.request("subscribe", {"room": "index"})
            self.assertEqual([x["seq"] for x in s["payload"]["comments"]][:3], [1, 2, 3])
            s = await c.request("subscribe", {"room": "1"})
            self.assertEqual([x["author"]["id"] for x in s["payload"]["comments"]][:2], ["BadComedian", "JD"])
        await carol.request("subscribe", {"room": "index"})

        # A bad token: 401 before the upgrade.
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus

        with self.assertRaises(InvalidStatus) as ctx:
            await connect(STACK.ws_url("comments-gateway-1", "not-a-token"), open_timeout=5)
        self.assertEqual(ctx.exception.response.status_code, 401)

        # Post on replica 1 -> every subscriber on both replicas.
        ack = await alice.request("post", {"room": "index", "text": f"hello from alice {tag}", "clientId": f"a1-{tag}"})
        self.assertEqual(ack["type"], "ack", ack)
        first = ack["payload"]["comment"]
        for c in (alice, bob, carol):
            await c.wait(lambda f: f["type"] == "comment" and f["payload"]["id"] == first["id"], what="index comment")
        # Book 1 from replica 2 -> alice on replica 1, not carol (index only): rooms are isolated.
        ack = await bob.request("post", {"room": "1", "text": f"bob on book 1 {tag}"})
        book_comment = ack["payload"]["comment"]
        await alice.wait(lambda f: f["type"] == "comment" and f["payload"]["id"] == book_comment["id"], what="book comment")
        await bob.wait(lambda f: f["type"] == "comment" and f["payload"]["id"] == book_comment["id"], what="own comment")
        await asyncio.sleep(0.5)
        self.assertEqual(carol.comments("1"), [])
        self.assertEqual([c["id"] for c in alice.comments("index")], [first["id"]])
        # Signed out: may read, not write.
        reply = await carol.request("post", {"room": "index", "text": "anonymous"})
        self.assertEqual((reply["type"], reply["payload"]["code"]), ("error", "unauthorized"))

        # Restart replica 2: its clients are closed with 1001, it exits 0; what was posted
        # meanwhile on replica 1 comes back with `since`.
        code = STACK.procs["comments-gateway-2"].terminate()
        self.assertEqual(code, 0, STACK.procs["comments-gateway-2"].tail())
        self.assertEqual(await bob.closed(), 1001)
        self.assertEqual(await carol.closed(), 1001)
        ack = await alice.request("post", {"room": "index", "text": f"while replica 2 is down {tag}"})
        missed = ack["payload"]["comment"]
        STACK.procs["comments-gateway-2"].start()
        STACK.wait_ready("comments-gateway-2")
        bob2 = WsClient("bob2")
        await bob2.connect(STACK.ws_url("comments-gateway-2", users["bob"][2]))
        s = await bob2.request("subscribe", {"room": "index", "since": first["seq"]})
        self.assertEqual([c["id"] for c in s["payload"]["comments"]], [missed["id"]])
        await bob2.request("subscribe", {"room": "1"})
        ack = await alice.request("post", {"room": "1", "text": f"after the restart {tag}"})
        after = ack["payload"]["comment"]
        await bob2.wait(lambda f: f["type"] == "comment" and f["payload"]["id"] == after["id"], what="comment after restart")
        # The same clientId again: the first comment, no duplicate.
        again = await alice.request("post", {"room": "index", "text": "retry", "clientId": f"a1-{tag}"})
        self.assertEqual(again["payload"]["comment"]["id"], first["id"])
        for c in (alice, bob2):
            await c.close()

        # Restart the library and counter (and Redis, with the compose AOF settings):
        # accounts, books, comments and counts persist.
        self.assertEqual(STACK.restart("library"), 0)
        cookie, me = login(lib, users["alice"][0], f"pw-{users['alice'][0]}")
        self.assertEqual(me["user"]["username"], users["alice"][0])
        token_for(lib, cookie)
        status, _, page = http("GET", f"{lib}/view/book/1")
        self.assertIn(f"after the restart {tag}", page.decode())
        status, _, body = http("GET", f"{STACK.url('counter')}/counter/1")
        views = json.loads(body)["count"]
        self.assertEqual(STACK.procs["storage_redis"].terminate(), 0)
        STACK.procs["storage_redis"].start()
        STACK.wait_port(STACK.redis_port, 30)
        self.assertEqual(STACK.restart("counter"), 0)
        status, _, body = http("GET", f"{STACK.url('counter')}/counter/1")
        self.assertEqual(json.loads(body)["count"], views, "counts survive a Redis restart (AOF)")
        for instance in ("comments-gateway-1", "comments-gateway-2"):
            STACK.wait_ready(instance)
            status, _, body = http("GET", STACK.url(instance, "/rooms/index/comments?limit=200"))
            ids = [c["id"] for c in json.loads(body)["comments"]]
            self.assertIn(first["id"], ids)
            self.assertIn(missed["id"], ids)


# ---------------------------------------------------------------------------------------------
# Rolling-restart drill
# ---------------------------------------------------------------------------------------------


class DrillClient:
    """Posts every ~1.1 s (under the compose rate limit), reconnects on close, resumes with `since`."""

    def __init__(self, idx, room, token, instances):
        self.idx, self.room, self.token, self.instances = idx, room, token, instances
        self.at = idx % len(instances)
        self.ws = None
        self.received = []          # (seq, id, t) in delivery order
        self.violations = []
        self.closes = []            # (t, code, instance)
        self.outages = []           # seconds from close to resubscribed
        self.acked = {}             # clientId -> comment
        self.pending = {}           # clientId -> text, not yet acked
        self.posting = True
        self.stopped = False
        self.connected = asyncio.Event()
        self.counter = 0

    @property
    def last_seq(self):
        return self.received[-1][0] if self.received else 0

    def deliver(self, comment):
        seq = comment["seq"]
        if seq <= self.last_seq:
            self.violations.append(f"client {self.idx}: seq {seq} after {self.last_seq} (duplicate or out of order)")
            return
        self.received.append((seq, comment["id"], time.monotonic()))

    async def run(self):
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        closed_at = None
        while not self.stopped:
            instance = self.instances[self.at]
            try:
                ws = await connect(STACK.ws_url(instance, self.token), ping_interval=None, open_timeout=3, close_timeout=2)
            except (OSError, asyncio.TimeoutError, Exception):
                self.at = (self.at + 1) % len(self.instances)
                await asyncio.sleep(0.05)
                continue
            try:
                sub = {"room": self.room}
                if self.last_seq:
                    sub["since"] = self.last_seq
                await ws.send(json.dumps({"type": "subscribe", "ref": "sub", "payload": sub}))
                async for raw in ws:
                    f = json.loads(raw)
                    t, p = f["type"], f.get("payload") or {}
                    if t == "subscribed":
                        for c in p["comments"]:
                            self.deliver(c)
                        if p.get("truncated"):
                            self.violations.append(f"client {self.idx}: truncated backlog")
                        if closed_at is not None:
                            self.outages.append(time.monotonic() - closed_at)
                            closed_at = None
                        self.ws = ws
                        self.connected.set()
                        for cid, text in list(self.pending.items()):
                            await self.send_post(cid, text)
                    elif t == "comment" and p["room"] == self.room:
                        self.deliver(p)
                    elif t == "ack" and "comment" in p:
                        cid = f.get("ref")
                        self.pending.pop(cid, None)
                        self.acked[cid] = p["comment"]
                    elif t == "error" and p.get("code") not in ("rate_limited", "unavailable"):
                        self.violations.append(f"client {self.idx}: error {p}")
            except ConnectionClosed:
                pass
            self.ws = None
            self.connected.clear()
            code = ws.protocol.close_rcvd.code if ws.protocol.close_rcvd else 1006
            if not self.stopped:
                closed_at = time.monotonic()
                self.closes.append((closed_at, code, instance))
                # to the other replica first; back to this one if that fails
                self.at = (self.at + 1) % len(self.instances)

    async def send_post(self, cid, text):
        ws = self.ws
        if ws is None:
            return
        try:
            await ws.send(json.dumps({"type": "post", "ref": cid, "payload": {"room": self.room, "text": text, "clientId": cid}}))
        except Exception:
            pass

    async def poster(self):
        while self.posting:
            self.counter += 1
            cid = f"c{self.idx}-{self.counter}"
            self.pending[cid] = f"drill client {self.idx} post {self.counter}"
            await self.send_post(cid, self.pending[cid])
            await asyncio.sleep(1.1)


@unittest.skipUnless(ENABLED, "set DEPLOY_TESTS=1 (scripts/test.sh does) to run the compose-equivalent stack")
class T2RollingRestartDrill(unittest.TestCase):
    CLIENTS = 6

    def test_rolling_restart_drill(self):
        started = time.monotonic()
        report = asyncio.run(asyncio.wait_for(self.drill(), DRILL_BUDGET_S))
        report["seconds"] = round(time.monotonic() - started, 1)
        sys.stderr.write(f"\nrolling-restart drill: {json.dumps(report)}\n")

    async def drill(self):
        secret = STACK.procs["comments-gateway-1"].env["AUTH_TOKEN_SECRET"]
        room = f"drill-{uuid.uuid4().hex[:8]}"
        instances = ["comments-gateway-1", "comments-gateway-2"]
        clients = [
            DrillClient(i, room, mint_token(secret, f"drill{i}_{room[-8:]}", f"Drill {i}"), instances)
            for i in range(self.CLIENTS)
        ]
        loop = asyncio.get_running_loop()
        runners = [asyncio.create_task(c.run()) for c in clients]
        await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in clients)), 15)
        posters = [asyncio.create_task(c.poster()) for c in clients]
        await asyncio.sleep(3)

        shutdowns = {}
        for instance in instances:
            proc = STACK.procs[instance]
            t0 = time.monotonic()
            code = await loop.run_in_executor(None, proc.terminate)
            shutdowns[instance] = (code, round(time.monotonic() - t0, 2))
            self.assertEqual(code, 0, f"{instance} did not exit 0 on SIGTERM:\n{proc.tail()}")
            await asyncio.sleep(0.5)
            proc.start()
            await loop.run_in_executor(None, STACK.wait_ready, instance)
            await asyncio.sleep(3)

        for c in clients:
            c.posting = False
        await asyncio.gather(*posters)
        # Let every pending post be acknowledged and every acknowledged comment arrive.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            acked = {cm["seq"] for c in clients for cm in c.acked.values()}
            if all(not c.pending for c in clients) and all(acked <= {s for s, _, _ in c.received} for c in clients):
                break
            await asyncio.sleep(0.2)
        for c in clients:
            c.stopped = True
            if c.ws is not None:
                await c.ws.close()
        await asyncio.wait_for(asyncio.gather(*runners, return_exceptions=True), 10)

        acked = {}
        for c in clients:
            for cm in c.acked.values():
                acked[cm["seq"]] = cm["id"]
        violations = [v for c in clients for v in c.violations]
        self.assertEqual(violations, [])
        self.assertEqual([c.idx for c in clients if c.pending], [], "posts never acknowledged")
        self.assertGreater(len(acked), self.CLIENTS * 5)
        # Stored == acknowledged (no post stored without its ack reaching the author).
        status, _, body = http("GET", STACK.url("comments-gateway-1", f"/rooms/{room}/comments?limit=200"))
        stored = {c["seq"]: c["id"] for c in json.loads(body)["comments"]}
        self.assertEqual(stored, acked)
        for c in clients:
            got = [(s, i) for s, i, _ in c.received]
            self.assertEqual(got, sorted(acked.items()), f"client {c.idx}: not every acknowledged comment exactly once, in order")
            self.assertTrue(c.closes, f"client {c.idx} was never disconnected")
            self.assertEqual({code for _, code, _ in c.closes}, {1001}, f"client {c.idx}: {c.closes}")
        longest_outage = max(o for c in clients for o in c.outages)
        longest_gap = 0.0
        for c in clients:
            times = [t for _, _, t in c.received]
            longest_gap = max([longest_gap] + [b - a for a, b in zip(times, times[1:])])
        return {
            "clients": self.CLIENTS,
            "acknowledged": len(acked),
            "deliveries": sum(len(c.received) for c in clients),
            "disconnects": sum(len(c.closes) for c in clients),
            "shutdown_exit_code_and_seconds": shutdowns,
            "longest_reconnect_gap_s": round(longest_outage, 3),
            "longest_delivery_gap_s": round(longest_gap, 3),
        }


if __name__ == "__main__":
    unittest.main()

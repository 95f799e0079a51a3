"""Checks that the demo data under data/ is consistent (run: python3 -m unittest discover -s tests).

- data/mongo/init-db.js is exactly what scripts/gen-init-db.py generates from data/demo/*.json;
- init-db.js, executed by node against a stub `db` (as mongosh would run it), inserts the same
  users, books, counters and comments as the JSON files say (skipped without node);
- every book's files exist, covers are PNGs of a few KB;
- the users' password hashes are argon2id and verify with password = username (skipped unless
  the argon2-cffi package is importable).
"""

import importlib.util
import json
import shutil
import subprocess
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "data" / "demo"
INIT_DB = ROOT / "data" / "mongo" / "init-db.js"

spec = importlib.util.spec_from_file_location("gen_init_db", ROOT / "scripts" / "gen-init-db.py")
gen_init_db = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen_init_db)

# Runs init-db.js the way mongosh would, against a recording stub, and prints what it did.
NODE_RUNNER = r"""
const fs = require('fs'), vm = require('vm');
const calls = [];
const tag = (t) => (v) => ({ $type: t, value: String(v) });
function collection(name) {
  return {
    createIndex: (keys, opts) => calls.push({ op: 'createIndex', coll: name, keys, opts: opts || {} }),
    insertMany: (docs) => calls.push({ op: 'insert', coll: name, docs }),
    insertOne: (doc) => calls.push({ op: 'insert', coll: name, docs: [doc] }),
  };
}
const dbFor = (dbName) => new Proxy({}, {
  get: (_, prop) => prop === 'getSiblingDB' ? ((n) => { calls.push({ op: 'use', db: n }); return dbFor(n); })
                                             : collection(prop),
});
const sandbox = { db: dbFor('test'), ObjectId: tag('objectId'), NumberLong: tag('long'),
                  NumberInt: tag('int'), Date };
vm.runInNewContext(fs.readFileSync(process.argv[1], 'utf8'), sandbox, { filename: 'init-db.js' });
process.stdout.write(JSON.stringify(calls, (k, v) => v));
"""


def load(name):
    return json.loads((DEMO / name).read_text(encoding="utf-8"))


class InitDbIsGenerated(unittest.TestCase):
    def test_committed_file_matches_generator(self):
        self.assertEqual(
            INIT_DB.read_text(encoding="utf-8"),
            gen_init_db.generate(),
            "data/mongo/init-db.js is stale: run python3 scripts/gen-init-db.py",
        )


@unittest.skipUnless(shutil.which("node"), "node not installed")
class InitDbAgreesWithJson(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        out = subprocess.run(["node", "-e", NODE_RUNNER, str(INIT_DB)], check=True,
                             capture_output=True, text=True, encoding="utf-8").stdout
        cls.calls = json.loads(out)
        cls.inserted = {}
        for call in cls.calls:
            if call["op"] == "insert":
                cls.inserted.setdefault(call["coll"], []).extend(call["docs"])

    def test_database_and_indexes(self):
        self.assertEqual(self.calls[0], {"op": "use", "db": "library"})
        indexes = [(c["coll"], c["keys"], c["opts"]) for c in self.calls if c["op"] == "createIndex"]
        # same names as the services' own createIndex calls, or MongoDB refuses one of them
        self.assertIn(("users", {"username": 1}, {"unique": True, "name": "username_1"}), indexes)
        self.assertIn(("comments", {"room": 1, "seq": 1}, {"unique": True, "name": "room_seq"}), indexes)

    def test_users(self):
        users = load("users.json")
        docs = self.inserted["users"]
        self.assertEqual(len(docs), len(users))
        for doc, user in zip(docs, users):
            self.assertEqual(doc["_id"]["$type"], "objectId")
            self.assertRegex(doc["_id"]["value"], r"^[0-9a-f]{24}$")
            self.assertEqual(doc["created"], user["created"])  # Date -> ISO string
            for field in ("username", "fullname", "email", "passwordHash", "role"):
                self.assertEqual(doc[field], user[field])
        self.assertEqual(sorted(u["username"] for u in users), ["Admin", "BadComedian", "JD"])
        self.assertEqual({u["username"]: u["role"] for u in users},
                         {"JD": "user", "BadComedian": "user", "Admin": "admin"})

    def test_books_and_counter(self):
        books = load("books.json")
        docs = self.inserted["books"]
        self.assertEqual([d["_id"] for d in docs], [{"$type": "long", "value": str(b["id"])} for b in books])
        for doc, book in zip(docs, books):
            self.assertEqual(doc["favorite"], {"$type": "int", "value": str(book["favorite"])})
            for field in gen_init_db.BOOK_FIELDS:
                if field != "favorite":
                    self.assertEqual(doc[field], book[field])
            self.assertNotIn("views", doc)
        self.assertEqual([b["title"] for b in books],
                         ["Война и мир", "JavaScript для чайников", "Туда и обратно", "Государство"])
        self.assertEqual(self.inserted["counters"],
                         [{"_id": "books", "seq": {"$type": "long", "value": str(len(books))}}])

    def test_comments(self):
        comments = load("comments.json")
        docs = self.inserted["comments"]
        self.assertEqual(len(docs), len(comments))
        by_room = {}
        for doc in docs:
            by_room.setdefault(doc["room"], []).append(doc)
            self.assertIs(doc["deleted"], False)
            self.assertIsInstance(doc["_id"], str)
        self.assertEqual(len({d["_id"] for d in docs}), len(docs))
        self.assertIn("index", by_room)
        self.assertIn("1", by_room)
        for room, room_docs in by_room.items():
            expected = sorted((c for c in comments if c["room"] == room), key=lambda c: c["createdAt"])
            self.assertEqual([d["seq"] for d in room_docs],
                             [{"$type": "long", "value": str(n)} for n in range(1, len(expected) + 1)])
            for doc, c in zip(room_docs, expected):
                self.assertEqual((doc["authorId"], doc["authorName"], doc["text"], doc["createdAt"]),
                                 (c["authorId"], c["authorName"], c["text"], c["createdAt"]))


class DemoFiles(unittest.TestCase):
    def test_book_files_exist(self):
        for book in load("books.json"):
            cover = DEMO / "files" / book["fileNameCover"]
            text = DEMO / "files" / book["fileNameBook"]
            self.assertTrue(cover.read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), cover)
            self.assertLess(cover.stat().st_size, 16 * 1024)
            self.assertGreater(len(text.read_text(encoding="utf-8")), 500)
            self.assertTrue(book["fileOriginalCover"].endswith(".png"))

    def test_comment_times_are_rfc3339_ms(self):
        for c in load("comments.json"):
            gen_init_db.parse_time(c["createdAt"], "createdAt")


@unittest.skipUnless(importlib.util.find_spec("argon2"), "argon2-cffi not installed")
class PasswordHashes(unittest.TestCase):
    def test_password_is_username(self):
        from argon2 import PasswordHasher

        ph = PasswordHasher()
        for user in load("users.json"):
            self.assertTrue(user["passwordHash"].startswith("$argon2id$v=19$"))
            self.assertTrue(ph.verify(user["passwordHash"], user["username"]))


if __name__ == "__main__":
    unittest.main()

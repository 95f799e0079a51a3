#!/usr/bin/env python3
"""Generate data/mongo/init-db.js from the demo data in data/demo/*.json (stdlib only).

The JSON files are the single source of truth; init-db.js is their MongoDB form for the
official mongo image (mounted into /docker-entrypoint-initdb.d, run once by mongosh on an
empty data directory). Schemas follow TEAM.md's shared data decisions:

  users    {_id: ObjectId, username, fullname, email, passwordHash, role, created: Date}
  books    {_id: NumberLong(id), title, authors, description, favorite: NumberInt,
            fileNameCover, fileOriginalCover, fileNameBook, fileOriginalBook}
  counters {_id: "books", seq: NumberLong(max book id)}
  comments {_id: "demo-<room>-<seq>", room, seq: NumberLong, authorId, authorName, text,
            createdAt: Date, deleted: false}   (seq 1..n per room in createdAt order)

Usage:
  python3 scripts/gen-init-db.py            # rewrite data/mongo/init-db.js
  python3 scripts/gen-init-db.py --check    # exit 1 if the committed file is stale
"""

import hashlib
import json
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "data" / "demo"
OUT = ROOT / "data" / "mongo" / "init-db.js"

ROOM_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
BOOK_FIELDS = ["title", "authors", "description", "favorite",
               "fileNameCover", "fileOriginalCover", "fileNameBook", "fileOriginalBook"]
USER_FIELDS = ["username", "fullname", "email", "passwordHash", "role", "created"]
COMMENT_FIELDS = ["room", "authorId", "authorName", "text", "createdAt"]


class DataError(Exception):
    pass


def load(name):
    return json.loads((DEMO / name).read_text(encoding="utf-8"))


def js_str(value):
    # JSON string literals are valid JavaScript; escape the two line separators JS dislikes.
    return json.dumps(value, ensure_ascii=False).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def parse_time(value, what):
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", value):
        raise DataError(f"{what}: {value!r} is not RFC 3339 UTC with milliseconds")
    datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return value


def object_id(username):
    # Deterministic ObjectId so regenerating gives the same file.
    return hashlib.sha256(("demo-user:" + username).encode("utf-8")).hexdigest()[:24]


def check_fields(obj, fields, what):
    if not isinstance(obj, dict):
        raise DataError(f"{what}: not an object")
    missing = [f for f in fields if f not in obj]
    if missing:
        raise DataError(f"{what}: missing {', '.join(missing)}")


def users_js(users):
    seen = set()
    lines = []
    for n, u in enumerate(users):
        what = f"users.json[{n}]"
        check_fields(u, USER_FIELDS, what)
        extra = set(u) - set(USER_FIELDS)
        if extra:
            raise DataError(f"{what}: unexpected {', '.join(sorted(extra))}")
        if u["username"] in seen:
            raise DataError(f"{what}: duplicate username {u['username']}")
        seen.add(u["username"])
        if u["role"] not in ("user", "admin"):
            raise DataError(f"{what}: role must be user or admin")
        if not u["passwordHash"].startswith("$argon2id$"):
            raise DataError(f"{what}: passwordHash must be an argon2id PHC string")
        parse_time(u["created"], what + ".created")
        lines.append(
            "  {"
            f" _id: ObjectId({js_str(object_id(u['username']))}),"
            f" username: {js_str(u['username'])},"
            f" fullname: {js_str(u['fullname'])},"
            f" email: {js_str(u['email'])},"
            f" passwordHash: {js_str(u['passwordHash'])},"
            f" role: {js_str(u['role'])},"
            f" created: new Date({js_str(u['created'])})"
            " }"
        )
    return lines, seen


def books_js(books):
    lines = []
    ids = []
    for n, b in enumerate(books):
        what = f"books.json[{n}]"
        check_fields(b, ["id"] + BOOK_FIELDS, what)
        if "views" in b:
            raise DataError(f"{what}: views come from counter, not from demo data")
        if not isinstance(b["id"], int) or b["id"] < 1:
            raise DataError(f"{what}: id must be a positive integer")
        if not isinstance(b["favorite"], int):
            raise DataError(f"{what}: favorite must be an integer")
        for f in ("fileNameCover", "fileNameBook"):
            if b[f] and not (DEMO / "files" / b[f]).is_file():
                raise DataError(f"{what}: {f} {b[f]} not in data/demo/files")
        ids.append(b["id"])
        fields = [f"_id: NumberLong({b['id']})"]
        for f in BOOK_FIELDS:
            fields.append(f"{f}: NumberInt({b[f]})" if f == "favorite" else f"{f}: {js_str(b[f])}")
        lines.append("  { " + ", ".join(fields) + " }")
    if ids != list(range(1, len(ids) + 1)):
        raise DataError(f"books.json: ids must be 1..n in order, got {ids}")
    return lines, max(ids, default=0)


def comments_js(comments, usernames):
    rooms = {}
    for n, c in enumerate(comments):
        what = f"comments.json[{n}]"
        check_fields(c, COMMENT_FIELDS, what)
        if not ROOM_RE.fullmatch(c["room"]):
            raise DataError(f"{what}: bad room {c['room']!r}")
        if c["authorId"] not in usernames:
            raise DataError(f"{what}: unknown author {c['authorId']}")
        text = c["text"].strip()
        if not text or len(text) > 2000:
            raise DataError(f"{what}: text must be 1..2000 code points after trimming")
        parse_time(c["createdAt"], what + ".createdAt")
        earlier = rooms.get(c["room"])
        if earlier and earlier[-1][0] > c["createdAt"]:
            # Embedded loaders insert in file order: keep file order == createdAt order.
            raise DataError(f"{what}: comments of room {c['room']!r} must be listed in createdAt order")
        rooms.setdefault(c["room"], []).append((c["createdAt"], n, c))
    lines = []
    for room in sorted(rooms, key=lambda r: (r != "index", r)):
        # seq 1..n in file order, which is createdAt order (checked above)
        for seq, (_, _, c) in enumerate(sorted(rooms[room], key=lambda t: (t[0], t[1])), start=1):
            lines.append(
                "  {"
                f" _id: {js_str(f'demo-{room}-{seq}')},"
                f" room: {js_str(room)},"
                f" seq: NumberLong({seq}),"
                f" authorId: {js_str(c['authorId'])},"
                f" authorName: {js_str(c['authorName'])},"
                f" text: {js_str(c['text'].strip())},"
                f" createdAt: new Date({js_str(c['createdAt'])}),"
                " deleted: false"
                " }"
            )
    return lines


def generate():
    users, seen = users_js(load("users.json"))
    books, max_id = books_js(load("books.json"))
    comments = comments_js(load("comments.json"), seen)

    def block(name, rows):
        return [f"db.{name}.insertMany([", ",\n".join(rows), "]);", ""]

    out = [
        "// GENERATED by scripts/gen-init-db.py from data/demo/*.json -- do not edit by hand.",
        "// Seeds the `library` database of the official mongo image: mount this file into",
        "// /docker-entrypoint-initdb.d (mongosh runs it once, on an empty data directory).",
        "// Passwords of the demo users equal their usernames (argon2id hashes below).",
        "",
        "db = db.getSiblingDB('library');",
        "",
        "// Index names must equal the ones the services create at start-up (library: username_1,",
        "// comments-gateway: room_seq): MongoDB refuses the same keys under another name (code 85).",
        'db.users.createIndex({ username: 1 }, { unique: true, name: "username_1" });',
        'db.comments.createIndex({ room: 1, seq: 1 }, { unique: true, name: "room_seq" });',
        "",
        *block("users", users),
        *block("books", books),
        f'db.counters.insertOne({{ _id: "books", seq: NumberLong({max_id}) }});',
        "",
        *block("comments", comments),
    ]
    return "\n".join(out)


def main(argv):
    try:
        text = generate()
    except (DataError, OSError, ValueError, KeyError) as exc:
        print(f"gen-init-db: {exc}", file=sys.stderr)
        return 2
    if "--check" in argv:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            print(f"{OUT.relative_to(ROOT)} is stale: run python3 scripts/gen-init-db.py", file=sys.stderr)
            return 1
        print(f"{OUT.relative_to(ROOT)} is up to date")
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Applies the recorded calls of data/mongo/init-db.js (JSON on stdin, from init-db.js's
initDbCalls) to a MongoDB-compatible server with pymongo, into database argv[2] instead of
`library`. Usage: python seed_mongo.py mongodb://127.0.0.1:PORT DBNAME < calls.json"""
import datetime
import json
import sys

from bson import Int64, ObjectId
from pymongo import MongoClient

CONVERT = {
    "objectId": ObjectId,
    "long": lambda v: Int64(int(v)),
    "int": int,
    "date": lambda v: datetime.datetime.fromisoformat(v.replace("Z", "+00:00")),
}


def bson(value):
    if isinstance(value, dict) and "$type" in value:
        return CONVERT[value["$type"]](value["value"])
    if isinstance(value, dict):
        return {k: bson(v) for k, v in value.items()}
    if isinstance(value, list):
        return [bson(v) for v in value]
    return value


def main():
    url, db_name = sys.argv[1], sys.argv[2]
    calls = json.load(sys.stdin)
    client = MongoClient(url, directConnection=True, serverSelectionTimeoutMS=5000)
    db = client[db_name]
    for call in calls:
        if call["op"] == "createIndex":
            db[call["coll"]].create_index(list(call["keys"].items()), **call["opts"])
        elif call["op"] == "insert":
            db[call["coll"]].insert_many([bson(d) for d in call["docs"]])
    counts = {name: db[name].count_documents({}) for name in sorted(db.list_collection_names())}
    print(json.dumps(counts))


if __name__ == "__main__":
    main()

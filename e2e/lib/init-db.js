// Evaluates data/mongo/init-db.js the way mongosh would, against a recording stub `db`, and
// returns what it does: [{op: 'use', db} | {op: 'createIndex', coll, keys, opts} |
// {op: 'insert', coll, docs}], with BSON values tagged as {$type: 'objectId'|'long'|'int'|'date', value}.
import { readFileSync } from 'node:fs';
import vm from 'node:vm';

export function initDbCalls(file) {
  const calls = [];
  const tag = (type) => (v) => ({ $type: type, value: String(v) });
  class DateTag {
    constructor(v) { return { $type: 'date', value: new Date(v).toISOString() }; }
  }
  const collection = (name) => ({
    createIndex: (keys, opts) => calls.push({ op: 'createIndex', coll: name, keys, opts: opts || {} }),
    insertMany: (docs) => calls.push({ op: 'insert', coll: name, docs }),
    insertOne: (doc) => calls.push({ op: 'insert', coll: name, docs: [doc] }),
  });
  const dbFor = () => new Proxy({}, {
    get: (_, prop) => (prop === 'getSiblingDB'
      ? (n) => { calls.push({ op: 'use', db: n }); return dbFor(n); }
      : collection(prop)),
  });
  const sandbox = { db: dbFor('test'), ObjectId: tag('objectId'), NumberLong: tag('long'), NumberInt: tag('int'), Date: DateTag };
  vm.runInNewContext(readFileSync(file, 'utf8'), sandbox, { filename: file });
  return JSON.parse(JSON.stringify(calls));
}

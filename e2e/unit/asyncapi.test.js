// docs/asyncapi.json (generated from shared-proto, see docs/protocol.md) is a valid AsyncAPI 3.0
// document according to the official parser (@asyncapi/parser: the AsyncAPI JSON Schema plus
// its semantic rules), and lists every message of the protocol. Run: node --test unit/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Parser, DiagnosticSeverity } from '@asyncapi/parser';

const DOC = fileURLToPath(new URL('../../docs/asyncapi.json', import.meta.url));

test('docs/asyncapi.json is a valid AsyncAPI 3.0.0 document', async () => {
  const text = await readFile(DOC, 'utf8');
  const { document, diagnostics } = await new Parser().parse(text);
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
  assert.deepEqual(
    errors.map((d) => `${d.code}: ${d.message} at ${d.path.join('/')}`),
    [],
    'the parser reports errors',
  );
  assert.ok(document, 'the parser returned a document');
  assert.equal(document.version(), '3.0.0');
  const names = new Set(document.allMessages().all().map((m) => m.name()));
  for (const type of ['subscribe', 'unsubscribe', 'post', 'edit', 'delete', 'react', 'typing', 'history', 'ping',
    'welcome', 'subscribed', 'unsubscribed', 'ack', 'comment', 'comment_deleted', 'comment_edited', 'reactions',
    'presence', 'notice', 'pong', 'error']) {
    assert.ok(names.has(type), `no message ${type}`);
  }
  const ops = document.operations().all();
  assert.ok(ops.some((o) => o.action() === 'receive') && ops.some((o) => o.action() === 'send'));
});

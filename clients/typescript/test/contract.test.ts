// The committed generated code and AsyncAPI document against the repository's schema files.
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { Parser, fromFile } from '@asyncapi/parser'
import { EVENTS, SCHEMAS } from '../src/generated/events.js'

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..')
const schemaDir = join(repo, 'schemas', 'json')

test('the generated module embeds every schema file exactly as it is', () => {
  const files = readdirSync(schemaDir).filter((f) => f.endsWith('.json'))
  assert.ok(files.length >= 6)
  for (const file of files) {
    const schema = JSON.parse(readFileSync(join(schemaDir, file), 'utf8'))
    assert.deepEqual(SCHEMAS[schema.$id], schema, `${file}: run \`npm run generate\` in clients/typescript`)
  }
  assert.equal(Object.keys(SCHEMAS).length, files.length, 'a schema file was removed: run `npm run generate`')
})

test('the AsyncAPI document is valid and gives every event its channel, key and resolved payload', async () => {
  const { document, diagnostics } = await fromFile(new Parser(), join(repo, 'schemas', 'asyncapi.yaml')).parse()
  const errors = diagnostics.filter((d) => d.severity === 0)
  assert.deepEqual(errors.map((d) => `${d.code}: ${d.message} at ${d.path.join('/')}`), [])
  assert.ok(document)
  const addresses = new Map(document.channels().all().map((c) => [c.address(), c]))
  for (const [name, route] of Object.entries(EVENTS)) {
    const channel = addresses.get(`{prefix}.${route.topic}`)
    assert.ok(channel, `no channel for ${route.topic}`)
    const message = channel.messages().all().find((m) => m.id() === name)
    assert.ok(message, `${route.topic} has no ${name} message`)
    assert.equal(message.headers()?.properties()?.['ce_type']?.const(), route.ceType)
    const required = SCHEMAS[route.schemaId] as { required: string[] }
    assert.deepEqual(message.payload()?.required(), required.required, name)
    assert.ok(message.bindings().has('kafka'))
  }
  const requested = addresses.get('{prefix}.images.requested')!.messages().all()[0]!
  const kind = requested.payload()!.properties()!['target']!.properties()!['kind']!
  const kinds = (SCHEMAS['https://regen.dev/schemas/TargetKind.json'] as { enum: string[] }).enum
  assert.ok(kinds.includes('thumbnail') && kinds.includes('composite'))
  assert.deepEqual(kind.enum(), kinds, 'TargetKind.json is resolved across files')
  assert.ok(addresses.has('{prefix}.deadletter'))
  const sends = document.operations().all().filter((o) => o.action() === 'send').map((o) => o.channels().all()[0]!.address())
  // One send operation per topic, however many events it carries (the control topic has five).
  const published = new Set(Object.values(EVENTS).filter((r) => r.publishedByOthers).map((r) => `{prefix}.${r.topic}`))
  assert.deepEqual(sends.sort(), [...published].sort())
})

import assert from 'node:assert/strict'
import { test } from 'node:test'
import { decodeCompletion, encode, keyOf, validateEvent } from '../src/codec.js'
import { InvalidEvent } from '../src/errors.js'
import type { AssetImported, BoundaryChanged, ImageGenerated, ImageRequested } from '../src/generated/events.js'

const SHA = 'ab'.repeat(32)
const asset: AssetImported = {
  asset_id: 'photo-42', uri: 'photos/42.jpg', media_type: 'image', sha256: SHA, size_bytes: 1234,
  imported_at: '2026-11-21T10:00:00.000Z',
}
const boundary: BoundaryChanged = {
  annotation_id: 'a1', video_id: 'v1', start_frame: 3, end_frame: 9, revision: 1, source: 'clip.mp4', crop: null,
}
const request: ImageRequested = { target: { kind: 'thumbnail', id: 'photo-42' }, variant: 'h400.jpg', request_id: 'r1' }
const generated: ImageGenerated = {
  target: { kind: 'thumbnail', id: 'photo-42' }, variant: 'h400.jpg', revision: 1, job_id: 'thumbnail:photo-42:h400.jpg:r1',
  uri: 'ph/photo-42.h400.jpg', sha256: SHA, width: 400, height: 300, bytes: 100, render_ms: 3.5, attempts: 1,
  cache_hit: false, request_ids: ['r1'], generated_at: '2026-11-21T10:00:01.000Z',
}

test('an event is encoded with the CloudEvents headers, its topic and its entity key', () => {
  const envelope = encode('AssetImported', asset, 'tests', 'id-1')
  assert.equal(envelope.topic, 'assets.imported')
  assert.equal(envelope.key, 'photo-42')
  assert.deepEqual(JSON.parse(envelope.value.toString()), asset)
  assert.deepEqual([...envelope.headers.keys()],
    ['ce_specversion', 'ce_id', 'ce_source', 'ce_type', 'ce_time', 'content-type'])
  assert.equal(envelope.headers.get('ce_type'), 'dev.regen.AssetImported.v1')
  assert.equal(envelope.headers.get('ce_id'), 'id-1')
  assert.equal(envelope.headers.get('ce_source'), 'tests')
  assert.equal(envelope.headers.get('ce_specversion'), '1.0')
  assert.equal(envelope.headers.get('content-type'), 'application/json')
  assert.ok(!Number.isNaN(Date.parse(envelope.headers.get('ce_time')!)))
})

test('the key follows the schema: annotation_id for a boundary, target.id for a request', () => {
  assert.equal(encode('BoundaryChanged', boundary, 'tests').key, 'a1')
  assert.equal(encode('ImageRequested', request, 'tests').key, 'photo-42')
  assert.equal(encode('ImageRequested', request, 'tests').topic, 'images.requested')
  assert.equal(keyOf('ImageGenerated', generated), 'photo-42')
})

test('each encode gets a fresh ce_id unless one is given', () => {
  const a = encode('AssetImported', asset, 'tests')
  const b = encode('AssetImported', asset, 'tests')
  assert.notEqual(a.ceId, b.ceId)
  assert.equal(a.headers.get('ce_id'), a.ceId)
})

test('an event that breaks its schema is refused, naming the field', () => {
  const cases: [string, unknown, RegExp][] = [
    ['missing field', { ...asset, sha256: undefined }, /sha256/],
    ['bad id', { ...asset, asset_id: 'has space' }, /asset_id/],
    ['extra field', { ...asset, colour: 'red' }, /additional/],
    ['wrong kind', { ...request, target: { kind: 'sketch', id: 'x' } }, /kind/],
    ['negative frame', { ...boundary, start_frame: -1 }, /start_frame/],
    ['bad timestamp', { ...asset, imported_at: 'yesterday-ish' }, /imported_at/],
    ['not an object', [], /\(body\)/],
  ]
  for (const [what, body, message] of cases) {
    assert.throws(() => encode('AssetImported' as never, body as never, 'tests'), (e: unknown) => {
      assert.ok(e instanceof InvalidEvent, what)
      return true
    }, what)
    const name = what === 'wrong kind' ? 'ImageRequested' : what === 'negative frame' ? 'BoundaryChanged' : 'AssetImported'
    assert.throws(() => validateEvent(name, body), message, what)
  }
})

test('an end frame before the start frame is refused as regen refuses it', () => {
  assert.throws(() => validateEvent('BoundaryChanged', { ...boundary, start_frame: 9, end_frame: 3 }),
    /end_frame 3 is before start_frame 9/)
})

test('completions are read from the results topic, and forged ones are skipped', () => {
  const headers = (ceType: string): [Buffer, Buffer][] => [[Buffer.from('ce_type'), Buffer.from(ceType)]]
  const read = decodeCompletion(Buffer.from(JSON.stringify(generated)), headers('dev.regen.ImageGenerated.v1'))
  assert.equal(read?.type, 'ImageGenerated')
  assert.deepEqual(read?.event, generated)
  const failed = { target: generated.target, variant: 'h400.jpg', revision: 1, job_id: '', reason: 'permanent',
    error_code: 'unknown-target', error: 'no such asset', attempts: 0, request_ids: ['r2'], failed_at: generated.generated_at }
  assert.equal(decodeCompletion(Buffer.from(JSON.stringify(failed)), headers('dev.regen.ImageFailed.v1'))?.type, 'ImageFailed')
  // Without ce_type, the topic's first event type is assumed.
  assert.equal(decodeCompletion(Buffer.from(JSON.stringify(failed)), [])?.type, 'ImageFailed')
  for (const [value, ceType] of [
    [JSON.stringify({ ...generated, uri: '/dev/zero' }), 'dev.regen.ImageGenerated.v1'],
    [JSON.stringify({ ...generated, generated_at: 123 }), 'dev.regen.ImageGenerated.v1'],
    ['not json', 'dev.regen.ImageGenerated.v1'],
    [JSON.stringify(generated), 'dev.regen.RenderJob.v1'],
  ] as const) {
    assert.equal(decodeCompletion(Buffer.from(value), headers(ceType)), undefined, value)
  }
  assert.equal(decodeCompletion(null, headers('dev.regen.ImageGenerated.v1')), undefined)
})

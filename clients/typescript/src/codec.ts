/**
 * regen's wire format, as streams/codec.py writes it: a JSON body matching
 * schemas/json/<Event>.json, keyed by the event's entity id, with CloudEvents 1.0
 * attributes in headers (binary content mode).
 */
import { randomUUID } from 'node:crypto'
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js'
import addFormatsModule from 'ajv-formats'
import { InvalidEvent } from './errors.js'
import { EVENTS, SCHEMAS, type Completion, type EventName, type EventsByName } from './generated/events.js'

export const SPECVERSION = '1.0'
export const CONTENT_TYPE = 'application/json'

/** One message ready for Kafka. */
export interface Envelope {
  /** Topic name after regen's prefix. */
  topic: string
  key: string
  value: Buffer
  headers: Map<string, string>
  ceId: string
}

// ajv-formats is CommonJS: its default export arrives wrapped under NodeNext.
const addFormats = (addFormatsModule as unknown as { default?: typeof addFormatsModule }).default ?? addFormatsModule

let validators: Map<string, ValidateFunction> | undefined

function validatorFor(name: EventName): ValidateFunction {
  if (!validators) {
    // strict: false, because the schemas use "description" beside "$ref" and
    // draft 2020-12 allows it; allErrors, so the message names every broken field.
    const ajv = new Ajv2020({ strict: false, allErrors: true })
    ;(addFormats as unknown as (a: Ajv2020) => void)(ajv)
    for (const schema of Object.values(SCHEMAS)) ajv.addSchema(schema)
    validators = new Map()
    for (const [event, route] of Object.entries(EVENTS)) validators.set(event, ajv.getSchema(route.schemaId)!)
  }
  const validator = validators.get(name)
  if (!validator) throw new InvalidEvent(`unknown event type ${JSON.stringify(name)}; known: ${Object.keys(EVENTS).join(', ')}`)
  return validator
}

/** Throws InvalidEvent unless `body` is a valid `name` event, by its JSON Schema and regen's own rules. */
export function validateEvent<Name extends EventName>(name: Name, body: unknown): asserts body is EventsByName[Name] {
  const validator = validatorFor(name)
  if (!validator(body)) {
    const errors = (validator.errors ?? []).map((e) => ({ path: e.instancePath || '(body)', message: e.message ?? 'invalid' }))
    const first = errors[0]
    const more = errors.length > 1 ? ` (and ${errors.length - 1} more)` : ''
    throw new InvalidEvent(`${name}${first ? `${first.path}: ${first.message}` : ''}${more}`, errors)
  }
  // Rules neither JSON Schema nor a field's type can say (schemas/validation.py check_semantics).
  const span = body as { start_frame?: unknown, end_frame?: unknown }
  if (typeof span.start_frame === 'number' && typeof span.end_frame === 'number' && span.end_frame < span.start_frame) {
    throw new InvalidEvent(`${name}: end_frame ${span.end_frame} is before start_frame ${span.start_frame}`)
  }
}

/** The Kafka key of an event: the value at its schema's key path (e.g. target.id). */
export function keyOf(name: EventName, body: object): string {
  let value: unknown = body
  for (const step of EVENTS[name].key) value = (value as Record<string, unknown> | undefined)?.[step]
  if (typeof value !== 'string') {
    throw new InvalidEvent(`${name}: its key ${EVENTS[name].key.join('.')} is not a string`)
  }
  return value
}

export function nowIso(): string {
  return new Date().toISOString()
}

/** Validate and encode one event; throws InvalidEvent and sends nothing if it is not valid. */
export function encode<Name extends EventName>(name: Name, event: EventsByName[Name], source: string,
  ceId: string = randomUUID()): Envelope {
  validateEvent(name, event)
  return {
    topic: EVENTS[name].topic,
    key: keyOf(name, event),
    value: Buffer.from(JSON.stringify(event), 'utf8'),
    headers: new Map([
      ['ce_specversion', SPECVERSION],
      ['ce_id', ceId],
      ['ce_source', source],
      ['ce_type', EVENTS[name].ceType],
      ['ce_time', nowIso()],
      ['content-type', CONTENT_TYPE],
    ]),
    ceId,
  }
}

/** A header's value as text, or undefined. */
export function header(headers: Iterable<[Buffer | string | null, Buffer | string | null]>, name: string): string | undefined {
  for (const [k, v] of headers) {
    if (k !== null && k.toString() === name) return v === null ? undefined : v.toString()
  }
  return undefined
}

export type DecodedCompletion =
  | { type: 'ImageGenerated', event: EventsByName['ImageGenerated'] }
  | { type: 'ImageFailed', event: EventsByName['ImageFailed'] }

const COMPLETION_TYPES = (Object.keys(EVENTS) as EventName[]).filter((n) => EVENTS[n].topic === EVENTS.ImageGenerated.topic)

/**
 * A record from the results topic, validated like any untrusted input, or
 * undefined for anything that is not a valid completion (regen dead-letters
 * those; a client just skips them).
 */
export function decodeCompletion(value: Buffer | null, headers: Iterable<[Buffer | null, Buffer | null]>):
  DecodedCompletion | undefined {
  if (value === null) return undefined
  const ceType = header(headers, 'ce_type')
  const type = ceType === undefined ? COMPLETION_TYPES[0] : COMPLETION_TYPES.find((n) => EVENTS[n].ceType === ceType)
  if (type === undefined) return undefined
  let body: unknown
  try {
    body = JSON.parse(value.toString('utf8'))
  } catch {
    return undefined
  }
  try {
    validateEvent(type, body)
  } catch {
    return undefined
  }
  return { type, event: body } as DecodedCompletion
}

export type { Completion }

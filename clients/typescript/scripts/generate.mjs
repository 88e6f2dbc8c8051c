#!/usr/bin/env node
// Generates, from regen's own sources, everything that must not drift from them:
//   src/generated/events.ts   event types, the JSON Schemas themselves, and each
//                             event's CloudEvents type, topic and key
//   ../../schemas/asyncapi.yaml  the AsyncAPI document of every topic a publisher
//                             or consumer outside regen touches
// Sources: schemas/json/*.json (the contract) and regen's topic table
// (streams/topics.py, read through scripts/regen_routing.py with regen's Python).
// Adding a schema file and its topic in Python needs only a re-run of this script.
//
//   node scripts/generate.mjs          write both files
//   node scripts/generate.mjs --check  exit 1 if either differs from a fresh generation
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { stringify } from 'yaml'

const here = dirname(fileURLToPath(import.meta.url))
const pkg = resolve(here, '..')
const repo = resolve(pkg, '..', '..')
const schemaDir = join(repo, 'schemas', 'json')
const outputs = {
  events: join(pkg, 'src', 'generated', 'events.ts'),
  asyncapi: join(repo, 'schemas', 'asyncapi.yaml'),
}

function regenPython() {
  if (process.env.REGEN_PYTHON) return process.env.REGEN_PYTHON
  const venv = join(repo, '.venv', 'bin', 'python')
  if (existsSync(venv)) return venv
  throw new Error(`regen's Python is needed to read its topic table: run \`make .venv/.installed\` in ${repo}, ` +
    'or set REGEN_PYTHON to a Python that has regen installed')
}

function readRouting() {
  const text = execFileSync(regenPython(), [join(here, 'regen_routing.py')], { cwd: repo, encoding: 'utf8' })
  return JSON.parse(text)
}

function readSchemas() {
  const files = readdirSync(schemaDir).filter((f) => f.endsWith('.json')).sort()
  return files.map((file) => {
    const schema = JSON.parse(readFileSync(join(schemaDir, file), 'utf8'))
    if (!schema.title || !schema.$id) throw new Error(`${file}: a schema needs a title and an $id`)
    return { file, schema }
  })
}

// The key is named in each event schema's description ("Key: target.id.").
function keyPath(name, schema) {
  const match = /Key: ([A-Za-z0-9_.]+)\./.exec(schema.description ?? '')
  if (!match) throw new Error(`schemas/json/${name}.json: its description must name the Kafka key ("Key: field.")`)
  return match[1].split('.')
}

// ---------------------------------------------------------------- types

const titleByFile = new Map()

function literal(value) {
  return JSON.stringify(value)
}

function comment(text, indent) {
  if (!text) return ''
  return `${indent}/** ${text.replace(/\*\//g, '* /')} */\n`
}

function typeOf(schema, root, indent) {
  if (schema === true || schema === undefined) return 'unknown'
  if (schema === false) return 'never'
  if (schema.$ref) {
    if (schema.$ref.startsWith('#/$defs/')) return typeOf(root.$defs[schema.$ref.slice(8)], root, indent)
    const title = titleByFile.get(schema.$ref.replace(/^\.\//, ''))
    if (!title) throw new Error(`${root.title}: $ref ${schema.$ref} names no schema file`)
    return title
  }
  if ('const' in schema) return literal(schema.const)
  if (schema.enum) return schema.enum.map(literal).join(' | ')
  for (const combiner of ['oneOf', 'anyOf']) {
    if (schema[combiner]) return schema[combiner].map((s) => typeOf(s, root, indent)).join(' | ')
  }
  if (schema.allOf) return schema.allOf.map((s) => `(${typeOf(s, root, indent)})`).join(' & ')
  if (Array.isArray(schema.type)) {
    return schema.type.map((t) => typeOf({ ...schema, type: t }, root, indent)).join(' | ')
  }
  switch (schema.type) {
    case 'string': return 'string'
    case 'integer': case 'number': return 'number'
    case 'boolean': return 'boolean'
    case 'null': return 'null'
    case 'array': {
      const item = typeOf(schema.items, root, indent)
      if (schema.minItems !== undefined && schema.minItems === schema.maxItems && schema.maxItems <= 8) {
        return `[${Array(schema.maxItems).fill(item).join(', ')}]`
      }
      return item.includes(' ') ? `Array<${item}>` : `${item}[]`
    }
    case 'object': return objectType(schema, root, indent)
    default: return 'unknown'
  }
}

function objectType(schema, root, indent) {
  const properties = schema.properties ?? {}
  const names = Object.keys(properties)
  if (names.length === 0) return 'Record<string, unknown>'
  const required = new Set(schema.required ?? [])
  const inner = indent + '  '
  const lines = names.map((name) => {
    const property = properties[name]
    const description = property.description ?? (property.$ref?.startsWith('#/$defs/')
      ? root.$defs[property.$ref.slice(8)]?.description : undefined)
    const optional = required.has(name) ? '' : '?'
    return `${comment(description, inner)}${inner}${name}${optional}: ${typeOf(property, root, inner)}`
  })
  const rest = schema.additionalProperties === false ? '' : `\n${inner}[other: string]: unknown`
  return `{\n${lines.join('\n')}${rest}\n${indent}}`
}

function declaration({ schema }) {
  const body = typeOf(schema, schema, '')
  const doc = comment(schema.description, '')
  return schema.type === 'object' && body.startsWith('{')
    ? `${doc}export interface ${schema.title} ${body}\n`
    : `${doc}export type ${schema.title} = ${body}\n`
}

function eventsModule(schemas, routing) {
  for (const { file, schema } of schemas) titleByFile.set(file, schema.title)
  const byTitle = new Map(schemas.map((s) => [s.schema.title, s.schema]))
  const events = Object.entries(routing.events)
  for (const [name] of events) {
    if (!byTitle.has(name)) throw new Error(`regen's topic table names ${name}, but schemas/json/${name}.json is missing`)
  }
  const table = events.map(([name, route]) => [name, {
    ceType: route.ce_type,
    topic: route.topic,
    key: keyPath(name, byTitle.get(name)),
    schemaId: byTitle.get(name).$id,
    publishedByOthers: route.published_by_others,
  }])
  const publishable = events.filter(([, route]) => route.published_by_others).map(([name]) => literal(name))
  const completions = events.filter(([, route]) => route.topic === 'images.results').map(([name]) => name)
  return `// Generated by scripts/generate.mjs from schemas/json/*.json and regen's topic table
// (streams/topics.py). Do not edit: change the schemas or the topics, then run \`npm run generate\`.
/* eslint-disable */

${schemas.map(declaration).join('\n')}
/** Every event regen's topics carry, by name. */
export interface EventsByName {
${events.map(([name]) => `  ${name}: ${name}`).join('\n')}
}

export type EventName = keyof EventsByName

/** The events publishers outside regen send (regen writes the others). */
export type PublishableEventName = ${publishable.join(' | ') || 'never'}

/** What the results topic carries: the answer to an ImageRequested. */
export type Completion = ${completions.join(' | ') || 'never'}

export interface EventRoute {
  /** CloudEvents \`ce_type\` header. */
  readonly ceType: string
  /** Topic name after the prefix (REGEN_TOPIC_PREFIX, default "${routing.topic_prefix}"). */
  readonly topic: string
  /** Path of the field whose value is the Kafka key. */
  readonly key: readonly string[]
  /** \`$id\` of the JSON Schema the body must match. */
  readonly schemaId: string
  readonly publishedByOthers: boolean
}

export const EVENTS: { readonly [Name in EventName]: EventRoute } = ${JSON.stringify(Object.fromEntries(table), null, 2)}

export const DEFAULT_TOPIC_PREFIX = ${literal(routing.topic_prefix)}
export const DEFAULT_PARTITIONS = ${routing.partitions}
export const DEADLETTER_TOPIC = ${literal(routing.deadletter.topic)}

/** The JSON Schemas, as in schemas/json, by \`$id\`. */
export const SCHEMAS: Readonly<Record<string, object>> = ${JSON.stringify(
    Object.fromEntries(schemas.map(({ schema }) => [schema.$id, schema])), null, 2)}
`
}

// ---------------------------------------------------------------- AsyncAPI

function channelId(topic) {
  return topic.replace(/[._-](\w)/g, (_, c) => c.toUpperCase())
}

const PREFIX_PARAMETER = (routing) => ({
  description: `REGEN_TOPIC_PREFIX of the regen installation (default "${routing.topic_prefix}").`,
  default: routing.topic_prefix,
})

function cloudEventsHeaders(ceType) {
  const text = (description) => ({ type: 'string', description })
  return {
    type: 'object',
    required: ['ce_specversion', 'ce_id', 'ce_source', 'ce_type', 'ce_time', 'content-type'],
    properties: {
      ce_specversion: { const: '1.0', description: 'CloudEvents version (binary content mode).' },
      ce_id: text('Unique per event; regen de-duplicates on it. A UUID is fine.'),
      ce_source: text('Who published, e.g. "annotator/web".'),
      ce_type: { const: ceType, description: 'Which event the body is. Without it the topic\'s first event type is assumed.' },
      ce_time: { type: 'string', format: 'date-time', description: 'When it was published (RFC 3339).' },
      'content-type': { const: 'application/json' },
    },
  }
}

function asyncapiDocument(schemas, routing) {
  const byTitle = new Map(schemas.map((s) => [s.schema.title, s]))
  const topics = new Map()
  for (const [name, route] of Object.entries(routing.events)) {
    if (!topics.has(route.topic)) topics.set(route.topic, { description: route.topic_description, events: [] })
    topics.get(route.topic).events.push([name, route])
  }
  const channels = {}
  const operations = {}
  const messages = {}
  for (const [topic, { description, events }] of topics) {
    const id = channelId(topic)
    const published = events.some(([, route]) => route.published_by_others)
    channels[id] = {
      address: `{prefix}.${topic}`,
      title: topic,
      description: `${description}. ${published
        ? 'Publishers send these; regen\'s workers consume them.'
        : 'regen\'s workers write these; anyone may follow the topic without a consumer group.'} ` +
        `Partitioned by the key with Kafka's default partitioner (murmur2 of the key's UTF-8 bytes, ` +
        `masked to 31 bits, modulo the partition count: ${routing.partitions} by default, REGEN_PARTITIONS).`,
      parameters: { prefix: PREFIX_PARAMETER(routing) },
      messages: Object.fromEntries(events.map(([name]) => [name, { $ref: `#/components/messages/${name}` }])),
    }
    operations[`${published ? 'send' : 'receive'}${id[0].toUpperCase()}${id.slice(1)}`] = {
      action: published ? 'send' : 'receive',
      channel: { $ref: `#/channels/${id}` },
      summary: published ? `Publish ${events.map(([n]) => n).join(', ')} to regen.`
        : `Follow ${events.map(([n]) => n).join(' and ')} from regen.`,
      messages: events.map(([name]) => ({ $ref: `#/channels/${id}/messages/${name}` })),
    }
    for (const [name, route] of events) {
      const { file, schema } = byTitle.get(name)
      const key = keyPath(name, schema).join('.')
      messages[name] = {
        name,
        title: name,
        summary: schema.description,
        contentType: 'application/json',
        headers: cloudEventsHeaders(route.ce_type),
        payload: { $ref: `./json/${file}` },
        bindings: {
          kafka: {
            key: { type: 'string', description: `The event's ${key}, as UTF-8.` },
            bindingVersion: '0.5.0',
          },
        },
      }
    }
  }
  const dead = channelId(routing.deadletter.topic)
  channels[dead] = {
    address: `{prefix}.${routing.deadletter.topic}`,
    title: routing.deadletter.topic,
    description: `${routing.deadletter.topic_description}: the original key, value and headers, ` +
      'plus kafka_dlt-* headers saying where the message came from and why it was refused.',
    parameters: { prefix: PREFIX_PARAMETER(routing) },
    messages: { DeadLetter: { $ref: '#/components/messages/DeadLetter' } },
  }
  operations[`receive${dead[0].toUpperCase()}${dead.slice(1)}`] = {
    action: 'receive',
    channel: { $ref: `#/channels/${dead}` },
    summary: 'Read what regen refused, and why.',
    messages: [{ $ref: `#/channels/${dead}/messages/DeadLetter` }],
  }
  const text = (description) => ({ type: 'string', description })
  messages.DeadLetter = {
    name: 'DeadLetter',
    title: 'DeadLetter',
    summary: 'A message regen could not process, kept as it was sent (a very large one is cut to a summary).',
    headers: {
      type: 'object',
      properties: {
        'kafka_dlt-original-topic': text('Topic the message was read from.'),
        'kafka_dlt-original-partition': text('Its partition, as decimal text.'),
        'kafka_dlt-original-offset': text('Its offset, as decimal text.'),
        'kafka_dlt-original-timestamp': text('Its timestamp in milliseconds, as decimal text.'),
        'kafka_dlt-original-consumer-group': text('The worker group that refused it.'),
        'kafka_dlt-exception-fqcn': text('The kind of error.'),
        'kafka_dlt-exception-message': text('Why it was refused, e.g. which field broke its schema.'),
        'regen_dlt-cut': text('Present only when the letter was cut to fit: what was cut.'),
      },
    },
    payload: { description: 'The original value, unchanged (any bytes).' },
    bindings: { kafka: { key: { type: 'string', description: 'The original key.' }, bindingVersion: '0.5.0' } },
  }
  return {
    asyncapi: '3.1.0',
    info: {
      title: 'regen events',
      version: '1.0.0',
      description: 'Every topic a publisher or consumer outside regen touches. Generated by ' +
        'clients/typescript/scripts/generate.mjs from schemas/json and streams/topics.py: do not edit. ' +
        'Bodies are JSON matching the schema files beside this document; CloudEvents 1.0 attributes ' +
        'travel in headers (binary content mode).',
    },
    defaultContentType: 'application/json',
    channels,
    operations,
    components: { messages },
  }
}

// ---------------------------------------------------------------- main

function generate() {
  const schemas = readSchemas()
  const routing = readRouting()
  return {
    events: eventsModule(schemas, routing),
    asyncapi: `# Generated by clients/typescript/scripts/generate.mjs: do not edit.\n${stringify(
      asyncapiDocument(schemas, routing), { lineWidth: 0, aliasDuplicateObjects: false })}`,
  }
}

const fresh = generate()
if (process.argv.includes('--check')) {
  const stale = Object.entries(outputs).filter(([what, path]) =>
    !existsSync(path) || readFileSync(path, 'utf8') !== fresh[what]).map(([, path]) => path)
  if (stale.length) {
    console.error(`out of date with schemas/json or streams/topics.py: ${stale.join(', ')}\n` +
      'run `npm run generate` in clients/typescript and commit the result')
    process.exit(1)
  }
  console.log('generated files are up to date')
} else {
  for (const [what, path] of Object.entries(outputs)) {
    mkdirSync(dirname(path), { recursive: true })
    writeFileSync(path, fresh[what])
    console.log(`wrote ${path}`)
  }
}

#!/usr/bin/env node
// Drives the built package from another language's tests (regen's parity test):
// reads one JSON command on stdin, prints one JSON answer on stdout.
//   {"publish": [{"type": "AssetImported", "event": {...}}],          validated, published as one batch
//    "raw": [{"topic": "annotations.boundaries", "key": "k", "value": "text", "headers": {"ce_type": "..."}}],
//    "requests": [{"kind": "thumbnail", "id": "photo-1", "variant": "h400.jpg", "timeoutMs": 60000}]}
// Settings come from the environment (KAFKA_BOOTSTRAP_SERVERS, REGEN_TOPIC_PREFIX, ...).
import { encode, ImageClient, Publisher, settingsFromEnv } from '../dist/src/index.js'

const chunks = []
for await (const chunk of process.stdin) chunks.push(chunk)
const command = JSON.parse(Buffer.concat(chunks).toString('utf8'))
const settings = settingsFromEnv()
const answer = {}

if (command.publish?.length || command.raw?.length) {
  const publisher = await Publisher.connect(settings, { source: 'tests/typescript' })
  try {
    if (command.publish?.length) {
      const ids = await publisher.publishMany(command.publish)
      answer.published = await Promise.all(command.publish.map(async ({ type, event }, i) => {
        const { topic, key } = encode(type, event, 'tests/typescript')
        return { ceId: ids[i], topic, key, partition: await publisher.partitionOf(topic, key) }
      }))
    }
    for (const { topic, key, value, headers } of command.raw ?? []) {
      await publisher.sendRaw(topic, key, Buffer.from(value, 'utf8'), new Map(Object.entries(headers ?? {})))
    }
  } finally {
    await publisher.close()
  }
}

if (command.requests?.length) {
  const client = await ImageClient.connect(settings, { source: 'tests/typescript' })
  try {
    answer.requests = await Promise.all(command.requests.map(({ kind, id, variant, timeoutMs, force }) =>
      client.requestImage(kind, id, variant, { timeoutMs, force }).then(
        (completion) => ({ ok: true, completion }),
        (error) => ({ ok: false, error: error.name, message: error.message, failure: error.failure ?? null }))))
  } finally {
    await client.close()
  }
}

process.stdout.write(JSON.stringify(answer) + '\n')

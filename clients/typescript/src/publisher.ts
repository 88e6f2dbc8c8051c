/**
 * Publishing regen's events from Node, as streams/publisher.py does from Python:
 *
 *   const publisher = await Publisher.connect(settingsFromEnv(), { source: 'annotator/web' })
 *   await publisher.publish('BoundaryChanged', { annotation_id: 'a1', ... })
 *   await publisher.close()
 *
 * Every event is checked against its JSON Schema before anything is sent,
 * carries the CloudEvents headers, and is keyed by its entity id onto the
 * partition Kafka's default partitioner (murmur2) gives that key, which is
 * where regen's tables keep the entity's state.
 */
import { ProduceAcks, Producer, type MessageToProduce } from '@platformatic/kafka'
import { encode, type Envelope } from './codec.js'
import { RegenError } from './errors.js'
import { DEFAULT_TOPIC_PREFIX, type EventsByName, type PublishableEventName } from './generated/events.js'
import { partitionFor } from './murmur2.js'
import { kafkaClientOptions, topicName, type ConnectionSettings } from './settings.js'

export interface PublisherOptions {
  /** CloudEvents ce_source: who publishes, e.g. "annotator/web". */
  source?: string
  /** Milliseconds the client may wait for a broker's answer. */
  timeout?: number
}

/** An event to publish, by name: `{ type: 'AssetImported', event: {...} }`. */
export type Publication = { [Name in PublishableEventName]: { type: Name, event: EventsByName[Name], ceId?: string } }[PublishableEventName]

type Outgoing = { message: MessageToProduce<Buffer, Buffer, Buffer, Buffer>, resolve: () => void, reject: (e: unknown) => void }

export class Publisher {
  private readonly partitionCounts = new Map<string, number>()
  // At most one produce request in flight, carrying everything queued meanwhile.
  // Why: @platformatic/kafka's idempotent producer advances a partition's
  // sequence number only when a request is answered, so two requests in flight
  // to one partition carry the same sequence and the broker drops the second
  // as a duplicate while acking it (a lost event; the parity test caught it).
  private queue: Outgoing[] = []
  private sending = false

  private constructor(readonly settings: ConnectionSettings, readonly source: string,
    private readonly producer: Producer<Buffer, Buffer, Buffer, Buffer>) {}

  static async connect(settings: ConnectionSettings, options: PublisherOptions = {}): Promise<Publisher> {
    // acks=all and idempotence, as the Python publisher: an event the call
    // returned for is on the broker once, even if a request was retried.
    const producer = new Producer<Buffer, Buffer, Buffer, Buffer>({
      ...kafkaClientOptions(settings, 'publisher'),
      idempotent: true,
      acks: ProduceAcks.ALL,
      autocreateTopics: false,
      ...(options.timeout ? { timeout: options.timeout } : {}),
    })
    const publisher = new Publisher(settings, options.source ?? 'regen/client-ts', producer)
    try {
      await producer.metadata({ topics: [] }) // fail here, with the broker's reason, not at the first send
    } catch (e) {
      await producer.close().catch(() => {})
      throw new RegenError(`cannot reach the Kafka broker at ${String(settings.bootstrapServers)}: ${(e as Error).message}`,
        { cause: e })
    }
    return publisher
  }

  /** Validate, publish and wait for the broker's ack. Returns the event's ce_id. */
  async publish<Name extends PublishableEventName>(type: Name, event: EventsByName[Name], ceId?: string): Promise<string> {
    const [id] = await this.publishMany([{ type, event, ceId } as Publication])
    return id!
  }

  /**
   * Publish a batch: every event is validated first (nothing is sent if one is
   * invalid), then all are sent in one request and acked together.
   */
  async publishMany(publications: readonly Publication[]): Promise<string[]> {
    const envelopes = publications.map(({ type, event, ceId }) =>
      encode(type, event as EventsByName[typeof type], this.source, ceId))
    await this.sendEnvelopes(envelopes)
    return envelopes.map((e) => e.ceId)
  }

  /**
   * Send bytes as they are, unchecked, on regen's topic `topic` (a name after
   * the prefix, e.g. "assets.imported"), keyed and partitioned like an event.
   * For tests and tools only: regen dead-letters whatever does not match.
   */
  async sendRaw(topic: string, key: string, value: Buffer, headers: Map<string, string> = new Map()): Promise<void> {
    await this.sendEnvelopes([{ topic, key, value, headers, ceId: headers.get('ce_id') ?? '' }])
  }

  /** The partition `key` lands in on regen's topic `topic` (after the prefix). */
  async partitionOf(topic: string, key: string): Promise<number> {
    return partitionFor(key, await this.partitionCount(topicName(this.settings, topic)))
  }

  async close(): Promise<void> {
    await this.producer.close()
  }

  private async sendEnvelopes(envelopes: readonly Envelope[]): Promise<void> {
    if (envelopes.length === 0) return
    const messages: MessageToProduce<Buffer, Buffer, Buffer, Buffer>[] = []
    for (const envelope of envelopes) {
      const topic = topicName(this.settings, envelope.topic)
      messages.push({
        topic,
        key: Buffer.from(envelope.key, 'utf8'),
        value: envelope.value,
        // The partition is chosen here, not by the client's partitioner (see murmur2.ts).
        partition: partitionFor(envelope.key, await this.partitionCount(topic)),
        headers: new Map([...envelope.headers].map(([k, v]) => [Buffer.from(k), Buffer.from(v, 'utf8')])),
      })
    }
    const sent = messages.map((message) => new Promise<void>((resolve, reject) => {
      this.queue.push({ message, resolve, reject })
    }))
    void this.flush() // settles every promise in `sent`; never throws
    await Promise.all(sent)
  }

  /** Send everything queued, one request at a time, until the queue is empty. */
  private async flush(): Promise<void> {
    if (this.sending) return
    this.sending = true
    try {
      while (this.queue.length) {
        const batch = this.queue
        this.queue = []
        try {
          await this.producer.send({ messages: batch.map((o) => o.message) })
          for (const outgoing of batch) outgoing.resolve()
        } catch (e) {
          for (const outgoing of batch) outgoing.reject(e)
        }
      }
    } finally {
      this.sending = false
    }
  }

  private async partitionCount(topic: string): Promise<number> {
    const known = this.partitionCounts.get(topic)
    if (known !== undefined) return known
    let count: number | undefined
    try {
      const metadata = await this.producer.metadata({ topics: [topic], autocreateTopics: false })
      count = metadata.topics.get(topic)?.partitionsCount
    } catch (e) {
      throw new RegenError(`topic ${topic} is not on the broker: start a regen worker with ` +
        `REGEN_TOPIC_PREFIX=${this.settings.topicPrefix ?? DEFAULT_TOPIC_PREFIX} first (it creates regen's topics), ` +
        `or check the prefix (${(e as Error).message})`, { cause: e })
    }
    if (!count) throw new RegenError(`topic ${topic} has no partitions in the broker's metadata`)
    // Regen's topics never change their partition count (its tables would break).
    this.partitionCounts.set(topic, count)
    return count
  }
}

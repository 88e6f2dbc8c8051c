/**
 * Asking regen for an image and waiting for it, from Node, as streams/client.py
 * does from Python:
 *
 *   const client = await ImageClient.connect(settingsFromEnv())
 *   const image = await client.requestImage('thumbnail', 'photo-42', 'h400.jpg')
 *   await client.close()
 *
 * A request is an ImageRequested with a fresh request_id; its answer is the
 * ImageGenerated or ImageFailed on the results topic whose request_ids name it
 * (a render that served several requests names them all). The client follows
 * the results topic from its end *before* it publishes, so no answer can slip
 * past, and without a consumer group (plain fetches from each partition's
 * leader), so it never takes partitions from anyone. One client serves any
 * number of concurrent requests with one producer and one follower.
 */
import { randomUUID } from 'node:crypto'
import { Consumer } from '@platformatic/kafka'
import { decodeCompletion } from './codec.js'
import { RegenError, RequestTimeout } from './errors.js'
import { EVENTS, type ImageFailed, type ImageGenerated, type ImageRequested, type TargetKind } from './generated/events.js'
import { Publisher } from './publisher.js'
import { kafkaClientOptions, topicName, type ConnectionSettings } from './settings.js'

/** The ImageFailed that answered a request, as an error. */
export class ImageRequestFailed extends RegenError {
  override name = 'ImageRequestFailed'
  constructor(readonly failure: ImageFailed) {
    super(`${failure.target.kind}:${failure.target.id} ${failure.variant} failed (${failure.reason}, ` +
      `${failure.error_code}): ${failure.error}`)
  }
}

export interface RequestOptions {
  /** Render again even if the store has the image. */
  force?: boolean
  priority?: 'interactive' | 'background'
  /** Milliseconds to wait for the completion (default 30 000). */
  timeoutMs?: number
}

export interface ImageClientOptions {
  /** CloudEvents ce_source of the requests. */
  source?: string
}

type Waiter = { resolve: (c: ImageGenerated) => void, reject: (e: Error) => void }

// How long the broker may hold a fetch that has no data yet: short, because a
// completion is waited for by a person (the Python client uses 50 ms).
const FETCH_MAX_WAIT_MS = 100
// After a failed fetch (a leader moving, the broker restarting): wait, then
// refresh the metadata and go on from the same offsets.
const FETCH_RETRY_MS = 500
const PARTITION_MAX_BYTES = 1024 * 1024
const OFFSET_OUT_OF_RANGE = 1

interface PartitionPosition { partition: number, leader: number, leaderEpoch: number, offset: bigint }

export class ImageClient {
  private readonly waiting = new Map<string, Waiter>()
  private positions: PartitionPosition[] = []
  private topicId = ''
  private closed = false
  private following: Promise<void> = Promise.resolve()
  private followError: Error | undefined

  private constructor(private readonly publisher: Publisher, private readonly consumer: Consumer,
    private readonly resultsTopic: string) {}

  static async connect(settings: ConnectionSettings, options: ImageClientOptions = {}): Promise<ImageClient> {
    const publisher = await Publisher.connect(settings, { source: options.source ?? 'regen/client-ts' })
    // A Consumer is the library's handle for fetches and offsets; its group id
    // is required by the constructor but never joined.
    const consumer = new Consumer({ ...kafkaClientOptions(settings, 'follower'), groupId: `regen-client-ts-${randomUUID()}` })
    const client = new ImageClient(publisher, consumer, topicName(settings, EVENTS.ImageGenerated.topic))
    try {
      await client.startFollowing()
    } catch (e) {
      await client.close()
      throw e
    }
    return client
  }

  /**
   * Publish an ImageRequested for `kind`/`id` and resolve with the ImageGenerated
   * that names its request id; reject with ImageRequestFailed if regen answers
   * with an ImageFailed, or RequestTimeout if no answer comes in time.
   */
  async requestImage(kind: TargetKind, id: string, variant: string, options: RequestOptions = {}): Promise<ImageGenerated> {
    const request: ImageRequested = {
      target: { kind, id }, variant, request_id: randomUUID().replaceAll('-', ''),
      priority: options.priority ?? 'interactive', force: options.force ?? false,
    }
    const timeoutMs = options.timeoutMs ?? 30_000
    const answer = new Promise<ImageGenerated>((resolve, reject) => {
      this.waiting.set(request.request_id, { resolve, reject })
    })
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(this.followError ?? new RequestTimeout(
        `no answer to request ${request.request_id} for ${kind}:${id} ${variant} within ${timeoutMs / 1000} s: ` +
        'is a regen worker running (`regen worker`) and caught up (`regen status`)?')), timeoutMs)
    })
    try {
      await this.publisher.publish('ImageRequested', request)
      return await Promise.race([answer, timeout])
    } finally {
      clearTimeout(timer)
      this.waiting.delete(request.request_id)
    }
  }

  /** The publisher this client sends with, for other events on the same connection. */
  get events(): Publisher {
    return this.publisher
  }

  async close(): Promise<void> {
    this.closed = true
    await this.following
    for (const waiter of this.waiting.values()) waiter.reject(new RegenError('the ImageClient was closed'))
    this.waiting.clear()
    await Promise.allSettled([this.consumer.close(), this.publisher.close()])
  }

  private async startFollowing(): Promise<void> {
    await this.refreshLeaders()
    // Resolve the end offsets now, before anything is published.
    const ends = (await this.consumer.listOffsets({ topics: [this.resultsTopic] })).get(this.resultsTopic) ?? []
    for (const position of this.positions) position.offset = ends[position.partition] ?? 0n
    this.following = this.follow()
  }

  private async refreshLeaders(): Promise<void> {
    const metadata = await this.consumer.metadata({ topics: [this.resultsTopic], forceUpdate: true })
    const topic = metadata.topics.get(this.resultsTopic)
    if (!topic) {
      throw new RegenError(`topic ${this.resultsTopic} is not on the broker: start a regen worker with the same ` +
        'REGEN_TOPIC_PREFIX first (it creates regen\'s topics)')
    }
    this.topicId = topic.id
    const known = new Map(this.positions.map((p) => [p.partition, p.offset]))
    this.positions = topic.partitions.map((p, partition) => ({
      partition, leader: p.leader, leaderEpoch: p.leaderEpoch, offset: known.get(partition) ?? 0n,
    }))
  }

  private async follow(): Promise<void> {
    while (!this.closed) {
      try {
        await this.fetchOnce()
      } catch (e) {
        if (this.closed) return
        this.followError = undefined
        await new Promise((r) => setTimeout(r, FETCH_RETRY_MS))
        try {
          await this.refreshLeaders()
        } catch (refreshError) {
          // Said to whoever times out next: the broker is unreachable, not slow.
          this.followError = new RegenError(`following ${this.resultsTopic} failed: ${(refreshError as Error).message}` +
            ` (after ${(e as Error).message})`)
        }
      }
    }
  }

  /** One fetch from each leader; every completion found is handed to its waiter. */
  private async fetchOnce(): Promise<void> {
    const byLeader = new Map<number, PartitionPosition[]>()
    for (const p of this.positions) byLeader.set(p.leader, [...(byLeader.get(p.leader) ?? []), p])
    await Promise.all([...byLeader].map(async ([leader, partitions]) => {
      const response = await this.consumer.fetch({
        node: leader,
        maxWaitTime: FETCH_MAX_WAIT_MS,
        topics: [{
          topicId: this.topicId,
          partitions: partitions.map((p) => ({ partition: p.partition, currentLeaderEpoch: p.leaderEpoch,
            fetchOffset: p.offset, lastFetchedEpoch: -1, partitionMaxBytes: PARTITION_MAX_BYTES })),
        }],
      })
      for (const topic of response.responses) {
        for (const answer of topic.partitions) {
          const position = partitions.find((p) => p.partition === answer.partitionIndex)
          if (!position) continue
          if (answer.errorCode === OFFSET_OUT_OF_RANGE) {
            // The log was truncated past us: go on from its start, as a fresh reader would.
            position.offset = answer.logStartOffset
            continue
          }
          if (answer.errorCode !== 0) throw new RegenError(`fetch from partition ${answer.partitionIndex} failed with code ${answer.errorCode}`)
          for (const batch of answer.records ?? []) {
            for (const record of batch.records) {
              const offset = batch.firstOffset + BigInt(record.offsetDelta)
              if (offset >= position.offset) this.deliver(record.value, record.headers)
            }
            const next = batch.firstOffset + BigInt(batch.lastOffsetDelta) + 1n
            if (next > position.offset) position.offset = next
          }
        }
      }
    }))
  }

  private deliver(value: Buffer | null, headers: [Buffer | null, Buffer | null][]): void {
    if (this.waiting.size === 0) return
    const completion = decodeCompletion(value, headers)
    if (!completion) return // not a valid completion: regen dead-letters those, a reader skips them
    for (const requestId of completion.event.request_ids ?? []) {
      const waiter = this.waiting.get(requestId)
      if (!waiter) continue
      this.waiting.delete(requestId)
      if (completion.type === 'ImageGenerated') waiter.resolve(completion.event)
      else waiter.reject(new ImageRequestFailed(completion.event))
    }
  }
}

/**
 * One request, one answer. For many requests keep one ImageClient open: each
 * call here connects, follows and closes.
 */
export async function requestImage(settings: ConnectionSettings, kind: TargetKind, id: string, variant: string,
  options: RequestOptions = {}): Promise<ImageGenerated> {
  const client = await ImageClient.connect(settings)
  try {
    return await client.requestImage(kind, id, variant, options)
  } finally {
    await client.close()
  }
}

/**
 * Kafka's default partitioner, as the Java client, aiokafka and Faust compute it:
 * murmur2 (seed 0x9747b28c) of the key's bytes, masked to 31 bits, modulo the
 * partition count. regen's tables are sharded by this mapping, so an event keyed
 * the same must land on the same partition whichever client sent it.
 *
 * Written out here rather than taken from the Kafka client: @platformatic/kafka's
 * default partitioner uses `hash >>> 0` (unsigned) instead of `hash & 0x7fffffff`,
 * which agrees with Java only when the partition count is a power of two.
 */

const SEED = 0x9747b28c
const M = 0x5bd1e995
const R = 24

/** The signed 32-bit murmur2 hash of `data`, as org.apache.kafka.common.utils.Utils.murmur2. */
export function murmur2(data: Uint8Array): number {
  const length = data.length
  let h = (SEED ^ length) | 0
  const whole = length - (length % 4)
  for (let i = 0; i < whole; i += 4) {
    let k = (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24)) | 0
    k = Math.imul(k, M)
    k ^= k >>> R
    k = Math.imul(k, M)
    h = Math.imul(h, M)
    h ^= k
  }
  switch (length % 4) {
    case 3:
      h ^= data[whole + 2]! << 16
    // falls through
    case 2:
      h ^= data[whole + 1]! << 8
    // falls through
    case 1:
      h ^= data[whole]!
      h = Math.imul(h, M)
  }
  h ^= h >>> 13
  h = Math.imul(h, M)
  h ^= h >>> 15
  return h | 0
}

/** The partition a message keyed `key` (UTF-8) lands in, out of `partitions`. */
export function partitionFor(key: string | Uint8Array, partitions: number): number {
  if (!Number.isInteger(partitions) || partitions < 1) {
    throw new RangeError(`partitions must be a positive integer, got ${partitions}`)
  }
  const bytes = typeof key === 'string' ? Buffer.from(key, 'utf8') : key
  return (murmur2(bytes) & 0x7fffffff) % partitions
}

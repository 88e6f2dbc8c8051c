import assert from 'node:assert/strict'
import { test } from 'node:test'
import { murmur2, partitionFor } from '../src/murmur2.js'

// org.apache.kafka.common.utils.UtilsTest#testMurmur2: the Java client's own vectors.
const JAVA: [string, number][] = [
  ['21', -973932308],
  ['foobar', -790332482],
  ['a-little-bit-long-string', -985981536],
  ['a-little-bit-longer-string', -1486304829],
  ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
  ['abc', 479470107],
]

// aiokafka.partitioner.murmur2 (unsigned) and its DefaultPartitioner's choice
// out of 1, 3, 4, 7 and 12 partitions, printed by regen's Python: every tail
// length, multi-byte UTF-8, and keys regen uses.
const AIOKAFKA: [string, number, number[]][] = [
  ['', 275646681, [0, 0, 1, 2, 9]],
  ['a', 2731586172, [0, 1, 0, 5, 4]],
  ['ab', 316155434, [0, 2, 2, 0, 2]],
  ['abc', 479470107, [0, 0, 3, 4, 3]],
  ['abcd', 2971317748, [0, 2, 0, 5, 8]],
  ['photo-42', 729735501, [0, 0, 1, 5, 9]],
  ['drag', 1305609018, [0, 0, 2, 0, 6]],
  ['annotation:7@video.mp4', 2945374519, [0, 2, 3, 1, 11]],
  ['ünïcödé-ключ', 3904255084, [0, 2, 0, 0, 8]],
  ['x'.repeat(37), 4016325283, [0, 2, 3, 3, 11]],
  ['ts-parity-asset-0', 1518422538, [0, 0, 2, 3, 6]],
  ['21', 3321034988, [0, 0, 0, 3, 0]],
  ['foobar', 3504634814, [0, 0, 2, 0, 6]],
]

test('murmur2 equals the Java client on its own test vectors', () => {
  for (const [key, expected] of JAVA) assert.equal(murmur2(Buffer.from(key)), expected, key)
})

test('murmur2 and the partition equal aiokafka for every tail length and UTF-8 keys', () => {
  for (const [key, hash, partitions] of AIOKAFKA) {
    assert.equal(murmur2(Buffer.from(key, 'utf8')) >>> 0, hash, key)
    assert.deepEqual([1, 3, 4, 7, 12].map((n) => partitionFor(key, n)), partitions, key)
  }
})

test('a hash with the top bit set is masked, not made unsigned, before the modulo', () => {
  // "a" hashes to 2731586172 (top bit set): unsigned % 3 would be 0, Java's mask gives 1.
  assert.equal(2731586172 % 3, 0)
  assert.equal(partitionFor('a', 3), 1)
})

test('a partition count that is not a positive integer is refused', () => {
  assert.throws(() => partitionFor('a', 0), RangeError)
  assert.throws(() => partitionFor('a', 2.5), RangeError)
})

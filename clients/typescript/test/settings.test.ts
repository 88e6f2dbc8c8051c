import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ConfigError } from '../src/errors.js'
import { kafkaClientOptions, settingsFromEnv, topicName } from '../src/settings.js'

test('the environment regen reads gives the same settings here', () => {
  const settings = settingsFromEnv({ KAFKA_BOOTSTRAP_SERVERS: 'k1:9092, k2:9092', REGEN_TOPIC_PREFIX: 'staging' })
  assert.equal(topicName(settings, 'images.requested'), 'staging.images.requested')
  const options = kafkaClientOptions(settings, 'test')
  assert.deepEqual(options.bootstrapBrokers, ['k1:9092', 'k2:9092'])
  assert.equal(options.tls, undefined)
  assert.equal(options.sasl, undefined)
  assert.equal(topicName(settingsFromEnv({ KAFKA_BOOTSTRAP_SERVERS: 'k' }), 'deadletter'), 'regen.deadletter')
})

test('SASL over TLS becomes the client\'s sasl and tls options, verifying the broker', () => {
  const settings = settingsFromEnv({ KAFKA_BOOTSTRAP_SERVERS: 'k:9093', KAFKA_SECURITY_PROTOCOL: 'SASL_SSL',
    KAFKA_SASL_MECHANISM: 'SCRAM-SHA-512', KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_PASSWORD: 'p' })
  const options = kafkaClientOptions(settings, 'test')
  assert.deepEqual(options.sasl, { mechanism: 'SCRAM-SHA-512', username: 'u', password: 'p' })
  assert.equal(options.tls?.rejectUnauthorized, true)
})

test('settings that cannot work are refused, saying what to do', () => {
  const base = { KAFKA_BOOTSTRAP_SERVERS: 'k:9092' }
  const cases: [NodeJS.ProcessEnv, RegExp][] = [
    [{}, /KAFKA_BOOTSTRAP_SERVERS is not set/],
    [{ ...base, KAFKA_SECURITY_PROTOCOL: 'TLS' }, /KAFKA_SECURITY_PROTOCOL="TLS" is not valid; valid: PLAINTEXT, SSL/],
    [{ ...base, KAFKA_SECURITY_PROTOCOL: 'SASL_SSL' }, /needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD/],
    [{ ...base, KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_PASSWORD: 'p' }, /does not use SASL; use SASL_SSL/],
    [{ ...base, KAFKA_SSL_CAFILE: '/ca.pem' }, /does not use TLS; use SSL or SASL_SSL/],
    [{ ...base, KAFKA_SECURITY_PROTOCOL: 'SSL', KAFKA_SSL_KEYFILE: '/k.pem' }, /without KAFKA_SSL_CERTFILE/],
    [{ ...base, KAFKA_SECURITY_PROTOCOL: 'SASL_SSL', KAFKA_SASL_MECHANISM: 'GSSAPI', KAFKA_SASL_USERNAME: 'u',
      KAFKA_SASL_PASSWORD: 'p' }, /KAFKA_SASL_MECHANISM="GSSAPI" is not valid/],
    [{ ...base, REGEN_TOPIC_PREFIX: 'a b' }, /REGEN_TOPIC_PREFIX="a b" is not valid/],
  ]
  for (const [env, message] of cases) {
    assert.throws(() => settingsFromEnv(env), (e: unknown) => e instanceof ConfigError && message.test(e.message),
      JSON.stringify(env))
  }
})

test('a TLS file that cannot be read is named', () => {
  const settings = settingsFromEnv({ KAFKA_BOOTSTRAP_SERVERS: 'k', KAFKA_SECURITY_PROTOCOL: 'SSL',
    KAFKA_SSL_CAFILE: '/nonexistent/ca.pem' })
  assert.throws(() => kafkaClientOptions(settings, 'test'), /cannot read KAFKA_SSL_CAFILE=\/nonexistent\/ca.pem/)
})

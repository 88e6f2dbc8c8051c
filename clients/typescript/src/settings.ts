/**
 * How to reach regen's broker, from the same environment variables regen's
 * Python reads (regen/settings.py), or from options given in code.
 */
import { readFileSync } from 'node:fs'
import type { ConnectionOptions as TlsOptions } from 'node:tls'
import { ConfigError } from './errors.js'
import { DEFAULT_TOPIC_PREFIX } from './generated/events.js'

export const SECURITY_PROTOCOLS = ['PLAINTEXT', 'SSL', 'SASL_PLAINTEXT', 'SASL_SSL'] as const
export const SASL_MECHANISMS = ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512'] as const
export type SecurityProtocol = (typeof SECURITY_PROTOCOLS)[number]
export type SaslMechanism = (typeof SASL_MECHANISMS)[number]

export interface ConnectionSettings {
  /** "host:port,host:port" or a list. */
  bootstrapServers: string | string[]
  /** Prefix of regen's topic names; must equal the workers' REGEN_TOPIC_PREFIX. */
  topicPrefix?: string
  securityProtocol?: SecurityProtocol
  saslMechanism?: SaslMechanism
  saslUsername?: string
  saslPassword?: string
  /** PEM file of the CAs that signed the broker's certificate; empty: the system's CAs. */
  sslCaFile?: string
  /** Client certificate and key (PEM) for mutual TLS. */
  sslCertFile?: string
  sslKeyFile?: string
  /** Client id the broker logs. */
  clientId?: string
}

/** Environment variable of each setting: the names regen's Python reads. */
export const ENVIRONMENT = {
  bootstrapServers: 'KAFKA_BOOTSTRAP_SERVERS',
  securityProtocol: 'KAFKA_SECURITY_PROTOCOL',
  saslMechanism: 'KAFKA_SASL_MECHANISM',
  saslUsername: 'KAFKA_SASL_USERNAME',
  saslPassword: 'KAFKA_SASL_PASSWORD',
  sslCaFile: 'KAFKA_SSL_CAFILE',
  sslCertFile: 'KAFKA_SSL_CERTFILE',
  sslKeyFile: 'KAFKA_SSL_KEYFILE',
  topicPrefix: 'REGEN_TOPIC_PREFIX',
} as const satisfies Partial<Record<keyof ConnectionSettings, string>>

/** Settings from the environment (the variables in ENVIRONMENT), validated. */
export function settingsFromEnv(env: NodeJS.ProcessEnv = process.env): ConnectionSettings {
  const read = (name: keyof typeof ENVIRONMENT) => env[ENVIRONMENT[name]] || undefined
  const bootstrapServers = read('bootstrapServers')
  if (!bootstrapServers) {
    throw new ConfigError(`${ENVIRONMENT.bootstrapServers} is not set: set it to the broker regen's workers use ` +
      '(`regen config` prints it), e.g. localhost:9092')
  }
  const settings: ConnectionSettings = {
    bootstrapServers,
    topicPrefix: read('topicPrefix'),
    securityProtocol: read('securityProtocol') as SecurityProtocol | undefined,
    saslMechanism: read('saslMechanism') as SaslMechanism | undefined,
    saslUsername: read('saslUsername'),
    saslPassword: read('saslPassword'),
    sslCaFile: read('sslCaFile'),
    sslCertFile: read('sslCertFile'),
    sslKeyFile: read('sslKeyFile'),
  }
  validate(settings)
  return settings
}

/** The same rules as regen's Python (Settings._validate_kafka_security). */
export function validate(settings: ConnectionSettings): void {
  const protocol = settings.securityProtocol ?? 'PLAINTEXT'
  const mechanism = settings.saslMechanism ?? 'PLAIN'
  const env = ENVIRONMENT
  if (!(SECURITY_PROTOCOLS as readonly string[]).includes(protocol)) {
    throw new ConfigError(`${env.securityProtocol}=${JSON.stringify(protocol)} is not valid; ` +
      `valid: ${SECURITY_PROTOCOLS.join(', ')}`)
  }
  if (!(SASL_MECHANISMS as readonly string[]).includes(mechanism)) {
    throw new ConfigError(`${env.saslMechanism}=${JSON.stringify(mechanism)} is not valid; ` +
      `valid: ${SASL_MECHANISMS.join(', ')}`)
  }
  const usesSasl = protocol.startsWith('SASL_')
  const usesTls = protocol === 'SSL' || protocol === 'SASL_SSL'
  if (usesSasl && !(settings.saslUsername && settings.saslPassword)) {
    throw new ConfigError(`${env.securityProtocol}=${protocol} needs ${env.saslUsername} and ${env.saslPassword}`)
  }
  if (!usesSasl && (settings.saslUsername || settings.saslPassword)) {
    throw new ConfigError(`${env.saslUsername}/${env.saslPassword} are set but ${env.securityProtocol}=${protocol} ` +
      'does not use SASL; use SASL_SSL (or SASL_PLAINTEXT on a trusted network)')
  }
  const tlsFiles = (['sslCaFile', 'sslCertFile', 'sslKeyFile'] as const).filter((name) => settings[name])
  if (tlsFiles.length && !usesTls) {
    throw new ConfigError(`${tlsFiles.map((name) => env[name]).join(', ')} set but ${env.securityProtocol}=` +
      `${protocol} does not use TLS; use SSL or SASL_SSL`)
  }
  if (settings.sslKeyFile && !settings.sslCertFile) {
    throw new ConfigError(`${env.sslKeyFile} is set without ${env.sslCertFile}: mutual TLS needs the client ` +
      'certificate too')
  }
  const prefix = settings.topicPrefix ?? DEFAULT_TOPIC_PREFIX
  if (!/^[A-Za-z0-9._-]{1,200}$/.test(prefix)) {
    throw new ConfigError(`${env.topicPrefix}=${JSON.stringify(prefix)} is not valid: letters, digits, '.', '_' ` +
      'and \'-\' only, as Kafka topic names allow')
  }
}

export function topicName(settings: ConnectionSettings, suffix: string): string {
  return `${settings.topicPrefix ?? DEFAULT_TOPIC_PREFIX}.${suffix}`
}

/** Options every @platformatic/kafka client this package builds is given. */
export interface KafkaClientOptions {
  clientId: string
  bootstrapBrokers: string[]
  tls?: TlsOptions
  sasl?: { mechanism: SaslMechanism, username: string, password: string }
}

export function kafkaClientOptions(settings: ConnectionSettings, role: string): KafkaClientOptions {
  validate(settings)
  const protocol = settings.securityProtocol ?? 'PLAINTEXT'
  const servers = Array.isArray(settings.bootstrapServers)
    ? settings.bootstrapServers : settings.bootstrapServers.split(',')
  const options: KafkaClientOptions = {
    clientId: settings.clientId ?? `regen-client-ts-${role}`,
    bootstrapBrokers: servers.map((s) => s.trim()).filter(Boolean),
  }
  if (protocol === 'SSL' || protocol === 'SASL_SSL') options.tls = tlsOptions(settings)
  if (protocol.startsWith('SASL_')) {
    options.sasl = { mechanism: settings.saslMechanism ?? 'PLAIN', username: settings.saslUsername!,
      password: settings.saslPassword! }
  }
  return options
}

/** Verifies the broker's certificate and host name, like regen's Python (no way to turn that off). */
function tlsOptions(settings: ConnectionSettings): TlsOptions {
  const read = (name: 'sslCaFile' | 'sslCertFile' | 'sslKeyFile') => {
    const path = settings[name]
    if (!path) return undefined
    try {
      return readFileSync(path)
    } catch (e) {
      throw new ConfigError(`cannot read ${ENVIRONMENT[name]}=${path}: ${(e as Error).message}`, { cause: e })
    }
  }
  const options: TlsOptions = { rejectUnauthorized: true }
  const ca = read('sslCaFile')
  const cert = read('sslCertFile')
  const key = read('sslKeyFile')
  if (ca) options.ca = ca
  if (cert) {
    options.cert = cert
    options.key = key ?? cert // a PEM may hold both, as Python's ssl accepts
  }
  return options
}

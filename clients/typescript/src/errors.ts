/** Base of every error this package throws on purpose. */
export class RegenError extends Error {
  override name = 'RegenError'
}

/** Settings (environment or options) that cannot work; the message says what is valid. */
export class ConfigError extends RegenError {
  override name = 'ConfigError'
}

/** An event that does not match its JSON Schema; nothing was sent. */
export class InvalidEvent extends RegenError {
  override name = 'InvalidEvent'
  constructor(message: string, readonly errors: readonly { path: string, message: string }[] = []) {
    super(message)
  }
}

/** No completion named the request within the time given. */
export class RequestTimeout extends RegenError {
  override name = 'RequestTimeout'
}

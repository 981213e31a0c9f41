// The process logger: pino, JSON lines on stderr (stdout belongs to the report), with every field that
// may hold a secret redacted wherever it appears.
import { pino, type Logger } from 'pino';

export const REDACTED_PATHS = [
  'password',
  'secretKey',
  'secretId',
  'accessKey',
  'token',
  'authorization',
  'webhookAuth',
  '*.password',
  '*.secretKey',
  '*.secretId',
  '*.accessKey',
  '*.token',
  '*.authorization',
  '*.webhookAuth',
  'headers.authorization',
  'req.headers.authorization',
  'config.registries.*.password',
  'config.registries.*.tcr.secretKey',
  'config.registries.*.swr.secretKey',
];

export function createLogger(level: string = process.env.FERRY_LOG_LEVEL ?? 'info', destination: number | NodeJS.WritableStream = 2): Logger {
  const dest = typeof destination === 'number' ? pino.destination({ fd: destination, sync: true }) : destination;
  return pino({ level, base: { name: 'ferry' }, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } }, dest);
}

/** A logger that drops everything (library use without logs, tests). */
export const silentLogger: Logger = pino({ level: 'silent' });

export type { Logger };

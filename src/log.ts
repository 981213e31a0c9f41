// The process logger: pino on stderr (stdout belongs to the report), with every field that may hold a
// secret redacted wherever it appears. Two formats: JSON lines (log pipelines, the daemon, anything
// that is not a terminal) and `pretty` (one readable line per record, via pino-pretty, for people).
import { pino, type Logger } from 'pino';
import { createRequire } from 'node:module';
import type { PinoPretty } from 'pino-pretty';

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

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** An unknown log level or format (from --log-level, FERRY_LOG_LEVEL, --log-format or FERRY_LOG_FORMAT). */
export class LogOptionError extends Error {
  override name = 'LogOptionError';
}

export function parseLogLevel(level: string, where = 'log level'): LogLevel {
  const l = level.trim().toLowerCase();
  if ((LOG_LEVELS as readonly string[]).includes(l)) return l as LogLevel;
  throw new LogOptionError(`${where}: unknown level ${JSON.stringify(level)} (expected one of ${LOG_LEVELS.join(' | ')})`);
}

export function parseLogFormat(format: string, where = 'log format'): LogFormat {
  const f = format.trim().toLowerCase();
  if ((LOG_FORMATS as readonly string[]).includes(f)) return f as LogFormat;
  throw new LogOptionError(`${where}: unknown format ${JSON.stringify(format)} (expected json | pretty)`);
}

export interface LoggerOptions {
  /** Default json. */
  format?: LogFormat | undefined;
  /** Colours in the pretty format (default: when the destination is a TTY). */
  colorize?: boolean | undefined;
}

export function createLogger(
  level: string = process.env.FERRY_LOG_LEVEL ?? 'info',
  destination: number | NodeJS.WritableStream = 2,
  opts: LoggerOptions = {},
): Logger {
  const options = { level: parseLogLevel(level), base: { name: 'ferry' }, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } };
  if (opts.format === 'pretty') {
    const fd = typeof destination === 'number' ? destination : undefined;
    const colorize = opts.colorize ?? (fd !== undefined ? process.stderr.isTTY && fd === 2 : false);
    // Synchronous, so a line is on the terminal before the progress display redraws under it and
    // before the process exits.
    // Loaded only for the pretty format (JSON lines need none of it).
    const pretty = (createRequire(import.meta.url)('pino-pretty') as { PinoPretty: typeof PinoPretty }).PinoPretty;
    const stream = pretty({
      colorize,
      sync: true,
      destination: fd ?? (destination as NodeJS.WritableStream),
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'pid,hostname,name',
      singleLine: true,
    });
    return pino(options, stream);
  }
  const dest = typeof destination === 'number' ? pino.destination({ fd: destination, sync: true }) : destination;
  return pino(options, dest);
}

/** A logger that drops everything (library use without logs, tests). */
export const silentLogger: Logger = pino({ level: 'silent' });

export type { Logger };

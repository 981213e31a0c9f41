// The daemon's own reading of the config: where to listen, whether that needs a token, and whether the
// schedules are valid. Checked at start-up (refusing to start) and on reload (keeping the old config).
import type { DaemonConfig, FerryConfig } from '../config/schema.js';
import { daemonSchema } from '../config/schema.js';
import { validateSchedules } from './scheduler.js';

export class DaemonConfigError extends Error {
  override name = 'DaemonConfigError';
}

export interface ListenAddress {
  host: string;
  port: number;
  loopback: boolean;
}

/** Parses daemon.listen: "127.0.0.1:8480", "[::1]:8480", "0.0.0.0:8480", ":8480" (all interfaces), "8480" (loopback). */
export function parseListen(listen: string): ListenAddress {
  const s = listen.trim();
  let host: string;
  let port: string;
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(s);
  if (v6) {
    host = v6[1]!;
    port = v6[2]!;
  } else if (/^\d+$/.test(s)) {
    host = '127.0.0.1';
    port = s;
  } else {
    const i = s.lastIndexOf(':');
    if (i < 0) throw new DaemonConfigError(`daemon.listen: expected HOST:PORT such as 127.0.0.1:8480, got ${JSON.stringify(listen)}`);
    host = s.slice(0, i) || '0.0.0.0';
    port = s.slice(i + 1);
    if (host.includes(':')) throw new DaemonConfigError(`daemon.listen: write IPv6 addresses in brackets, e.g. [::1]:8480, got ${JSON.stringify(listen)}`);
  }
  const n = Number(port);
  if (!/^\d+$/.test(port) || n > 65535) throw new DaemonConfigError(`daemon.listen: invalid port in ${JSON.stringify(listen)}`);
  return { host, port: n, loopback: isLoopback(host) };
}

export function isLoopback(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || h === '::1' || /^127(?:\.\d{1,3}){3}$/.test(h);
}

/** Shortest token and webhook secret the daemon accepts: guessable values must not guard copies and deletions. */
export const MIN_SECRET_LENGTH = 16;
/** The placeholders of deploy/kubernetes/base/secret.yaml and the docs ("CHANGE-ME", "change-me-…"). */
const PLACEHOLDER = /change[-_ ]?me/i;

function secretProblems(key: string, value: string | undefined, secret: string | undefined): string[] {
  if (value === undefined) return [];
  if (PLACEHOLDER.test(value)) return [`${key}: still the placeholder (${JSON.stringify(value)}); set a random secret, e.g. \`openssl rand -hex 24\``];
  if ((secret ?? '').trim().length < MIN_SECRET_LENGTH) return [`${key}: use at least ${MIN_SECRET_LENGTH} characters${secret !== value ? ' after the scheme word (e.g. "Bearer <secret>")' : ''}`];
  return [];
}

/** The daemon section with defaults (a config without `daemon:` still runs as a daemon). */
export function daemonSettings(config: FerryConfig): DaemonConfig {
  return config.daemon ?? daemonSchema.parse({});
}

/** Everything that makes a config unusable for the daemon; throws DaemonConfigError listing them. */
export function checkDaemonConfig(config: FerryConfig): { settings: DaemonConfig; listen: ListenAddress } {
  const settings = daemonSettings(config);
  const problems: string[] = [];
  let listen: ListenAddress | undefined;
  try {
    listen = parseListen(settings.listen);
    if (!listen.loopback && !settings.token) {
      problems.push(
        `daemon.listen is ${settings.listen}, which is reachable from other machines: set daemon.token (a bearer token required by the API) or listen on 127.0.0.1`,
      );
    }
  } catch (err) {
    problems.push((err as Error).message);
  }
  problems.push(...secretProblems('daemon.token', settings.token, settings.token));
  // Harbor sends the "Auth Header" verbatim; its secret is what follows a scheme word, if any.
  problems.push(...secretProblems('daemon.webhookAuth', settings.webhookAuth, settings.webhookAuth?.replace(/^(?:bearer|basic|token)\s+/i, '')));
  problems.push(...validateSchedules(config));
  if (problems.length || !listen) throw new DaemonConfigError(`the daemon cannot use this config:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  return { settings, listen };
}

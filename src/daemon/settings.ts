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
  if (settings.token !== undefined && settings.token.length < 16) problems.push('daemon.token: use at least 16 characters');
  problems.push(...validateSchedules(config));
  if (problems.length || !listen) throw new DaemonConfigError(`the daemon cannot use this config:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  return { settings, listen };
}

// `ferry daemon`: the long-lived service. This file is the process side: load the config, start the
// Daemon, reload on SIGHUP, stop gracefully on SIGTERM/SIGINT, and return the exit code
// (0 stopped normally, 1 could not start, 2 config unusable for the daemon or its state directory in use, 143 SIGTERM, 130 SIGINT).
import { ConfigError, loadConfig } from '../config/load.js';
import type { Logger } from '../log.js';
import { StateLockedError } from '../state/types.js';
import { Daemon, type DaemonOptions } from './service.js';
import { DaemonConfigError } from './settings.js';

export { Daemon, type DaemonOptions } from './service.js';
export { DaemonConfigError, checkDaemonConfig, parseListen } from './settings.js';

export interface RunDaemonOptions {
  configFile: string;
  stateDir?: string | undefined;
  logger: Logger;
  /** Resolves to stop the daemon as if SIGTERM arrived (tests, embedding). */
  stop?: Promise<unknown> | undefined;
}

const EXIT = { ok: 0, failed: 1, invalid: 2, interrupted: 130, terminated: 143 } as const;

export async function runDaemon(opts: RunDaemonOptions): Promise<number> {
  const { logger } = opts;
  let daemon: Daemon;
  try {
    const config = loadConfig(opts.configFile);
    const options: DaemonOptions = { config, stateDir: opts.stateDir, logger, defaultMetrics: true };
    daemon = new Daemon(options);
  } catch (err) {
    if (err instanceof ConfigError || err instanceof DaemonConfigError || err instanceof StateLockedError) {
      process.stderr.write(`ferry: ${err.message}\n`);
      return EXIT.invalid;
    }
    throw err;
  }
  try {
    await daemon.start();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    process.stderr.write(`ferry: the daemon could not start: ${e.code === 'EADDRINUSE' ? `${listenAddress(e)} is already in use (daemon.listen)` : e.message}\n`);
    await daemon.stop(0).catch(() => undefined);
    return EXIT.failed;
  }

  return new Promise<number>((resolve) => {
    let code: number | undefined;
    const stop = (sig: NodeJS.Signals | 'stop') => {
      if (code !== undefined) {
        logger.warn({ signal: sig }, 'second signal: aborting running transfers now');
        daemon.abortNow();
        return;
      }
      code = sig === 'SIGINT' ? EXIT.interrupted : sig === 'SIGTERM' ? EXIT.terminated : EXIT.ok;
      logger.info({ signal: sig }, 'shutting down');
      daemon
        .stop()
        .catch((err: unknown) => logger.error({ err: (err as Error).message }, 'shutdown failed'))
        .finally(() => {
          process.off('SIGHUP', onHup);
          process.off('SIGTERM', onTerm);
          process.off('SIGINT', onInt);
          resolve(code!);
        });
    };
    const onHup = () => {
      logger.info('SIGHUP: reloading the config');
      let next;
      try {
        next = loadConfig(opts.configFile);
      } catch (err) {
        daemon.metrics.reload('rejected');
        logger.error({ err: (err as Error).message }, 'config reload rejected; keeping the running config');
        return;
      }
      daemon.reload(next);
    };
    const onTerm = () => stop('SIGTERM');
    const onInt = () => stop('SIGINT');
    process.on('SIGHUP', onHup);
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
    void opts.stop?.then(() => stop('stop'));
  });
}

/** "127.0.0.1:8480" out of a listen error ("listen EADDRINUSE: address already in use 127.0.0.1:8480"). */
function listenAddress(e: NodeJS.ErrnoException & { address?: string; port?: number }): string {
  if (e.address !== undefined && e.port !== undefined) return `address ${e.address.includes(':') ? `[${e.address}]` : e.address}:${e.port}`;
  const m = /(\S+:\d+)\s*$/.exec(e.message);
  return m ? `address ${m[1]}` : 'the address';
}

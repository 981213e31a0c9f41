// SIGINT/SIGTERM for one-shot commands. The first signal is a graceful stop: no new artifact or blob
// copy starts, copies in flight go on for up to `transfer.gracePeriod` seconds, then they are aborted
// (resumable chunked uploads keep their checkpoint, see chunked.ts); the command still writes its
// report and exits 130 (SIGINT) or 143 (SIGTERM). A second signal exits at once with that code:
// every finished blob is committed to the state database before what depends on it, so nothing already done is lost.
import type { Logger } from 'pino';

export const SignalExitCode: Record<'SIGINT' | 'SIGTERM', number> = { SIGINT: 130, SIGTERM: 143 };

export interface ShutdownSignals {
  /** Fires on the first signal: take no new work. */
  stop: AbortSignal;
  /** Fires when the grace period is over: abort what is still in flight. */
  abort: AbortSignal;
}

export interface GracefulOptions {
  /** Seconds between the first signal and aborting in-flight copies. */
  gracePeriodSeconds: number;
  /** Called for the second signal; exits the process by default. */
  exitNow?: ((code: number) => void) | undefined;
}

export async function withGracefulSignals<T>(
  logger: Logger,
  opts: GracefulOptions,
  fn: (signals: ShutdownSignals) => Promise<T>,
): Promise<{ result: T; signal?: NodeJS.Signals }> {
  const stop = new AbortController();
  const abort = new AbortController();
  let received: NodeJS.Signals | undefined;
  let timer: NodeJS.Timeout | undefined;
  const graceMs = Math.max(0, opts.gracePeriodSeconds * 1000);
  const onSignal = (sig: NodeJS.Signals) => {
    const code = sig === 'SIGINT' ? SignalExitCode.SIGINT : SignalExitCode.SIGTERM;
    if (received) {
      logger.warn({ signal: sig }, 'second signal: exiting now (finished blobs are recorded in the state; the next run resumes)');
      (opts.exitNow ?? ((c: number) => process.exit(c)))(code);
      return;
    }
    received = sig;
    logger.warn(
      { signal: sig, gracePeriodSeconds: opts.gracePeriodSeconds },
      'stopping: no new work; copies in flight may finish within the grace period, then they are aborted (resumable uploads keep their checkpoint); send the signal again to exit at once',
    );
    stop.abort(new Error(`interrupted by ${sig}`));
    const abortNow = () => {
      if (abort.signal.aborted) return;
      logger.warn({ signal: sig }, 'grace period over: aborting the copies still in flight');
      abort.abort(new Error(`interrupted by ${sig}, grace period of ${opts.gracePeriodSeconds} s over`));
    };
    if (graceMs === 0) abortNow();
    else timer = setTimeout(abortNow, graceMs);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const result = await fn({ stop: stop.signal, abort: abort.signal });
    return received ? { result, signal: received } : { result };
  } finally {
    if (timer) clearTimeout(timer);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

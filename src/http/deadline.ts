// Deadlines for requests (dispatch.ts) and blob attempts (transfer/blob-copier.ts), cleared as soon
// as what they bound is over. Not AbortSignal.timeout() / AbortSignal.any(): their timer and signal
// live until the deadline passes (120 s and more) however early the work ended, and AbortSignal.any()
// leaves a WeakRef in the parent's set of dependants for every call (Node 20 drops them only when the
// parent itself goes), so with the run's signal as the parent a run held one per blob and request
// for its whole length: the heap grew with the catalog (issue 11 item 1).

export interface Deadline {
  /** Aborted when the deadline passes or the caller's signal aborts. */
  signal: AbortSignal;
  /** Aborted only when the deadline passes (not when the caller's signal aborts). */
  expiry: AbortSignal;
  /** Whether the deadline passed (not the caller's signal). */
  readonly expired: boolean;
  /** Stops the timer and lets go of the caller's signal (idempotent). */
  clear(): void;
}

/**
 * A deadline that aborts `signal` after `ms` or when `parent` aborts, and is released by clear().
 */
export function deadline(ms: number, parent: AbortSignal | undefined): Deadline {
  const controller = new AbortController();
  const expiry = new AbortController();
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    const reason = new Error(`deadline of ${ms} ms passed`);
    expiry.abort(reason);
    controller.abort(reason);
  }, ms);
  timer.unref();
  const onAbort = () => controller.abort(parent?.reason);
  if (parent?.aborted) onAbort();
  else parent?.addEventListener('abort', onAbort, { once: true });
  return {
    signal: controller.signal,
    expiry: expiry.signal,
    get expired() {
      return expired;
    },
    clear() {
      clearTimeout(timer);
      parent?.removeEventListener('abort', onAbort);
    },
  };
}

// Back-pressure between the plan stream and the copies: at most `limit` artifact copies of one rule
// started and not finished, so the listing runs only a little ahead of the copies and memory holds a
// window of the plan, never the plan. A copy reports its own failure (in the rule's stats); an error
// that escapes one is kept and rethrown by done().
export class CopyPipeline {
  private readonly inflight = new Set<Promise<void>>();
  private error: unknown;

  constructor(private readonly limit: number) {}

  /** Starts `task` once fewer than `limit` are in flight (waits for room first). */
  async add(task: () => Promise<void>): Promise<void> {
    while (this.inflight.size >= this.limit) await Promise.race(this.inflight);
    const p: Promise<void> = task()
      .catch((err: unknown) => {
        this.error ??= err;
      })
      .finally(() => this.inflight.delete(p));
    this.inflight.add(p);
  }

  /** Waits for every copy started; rethrows the first error that escaped one. */
  async done(): Promise<void> {
    while (this.inflight.size) await Promise.all(this.inflight);
    if (this.error !== undefined) throw this.error;
  }
}

// Push order per destination repository (issue 15). The plan orders a repository's artifacts oldest
// first by the source's push time (src/plan/order.ts), but with transfer.artifactConcurrency > 1 the
// copies run at once and a small artifact would push its tag before a big one planned earlier. Here
// each copy takes a turn in its destination repository's line when it is started (in planned order);
// its blobs and child manifests copy in parallel with the others, and only its tag push waits until
// every earlier artifact of that repository pushed its tags or ended (failed, skipped, present,
// stopped). The destination registry then stamps its own push times in the planned order.
//
// Memory: one promise per repository with a copy in flight; a line that empties is dropped.

/** One artifact's place in its destination repository's line. */
export interface PushTurn {
  /** Resolves once every earlier artifact of the repository pushed its tags or ended. */
  ready(): Promise<void>;
  /** This artifact pushed its tags or ended: the next one may push. Idempotent. */
  done(): void;
}

export class PushOrder {
  /** Repository key → the turn of the last artifact that entered its line, while it is not done. */
  private readonly last = new Map<string, Promise<void>>();

  /** Takes the next place in `key`'s line (call in planned order, when the artifact's copy is started). */
  enter(key: string): PushTurn {
    const before = this.last.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    // Done only when the earlier ones are: a later artifact waits for all of them through this one.
    const chained = before.then(() => mine);
    this.last.set(key, chained);
    let finished = false;
    return {
      ready: () => before,
      done: () => {
        if (finished) return;
        finished = true;
        release();
        void chained.then(() => {
          if (this.last.get(key) === chained) this.last.delete(key);
        });
      },
    };
  }

  /** Repositories with a line (tests: the lines are dropped once empty). */
  get size(): number {
    return this.last.size;
  }
}

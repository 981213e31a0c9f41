// What the request layer tells the outside: a count of requests per registry and kind (for plan and
// report: "how many requests each registry received"), and an optional observer called once per
// request sent (the CLI logs it at debug level). URLs are handed out without their query, which may
// carry upload state or signatures; headers are never handed out.
export interface RequestEvent {
  /** Registry (config name) or API the request went to. */
  registry: string;
  method: string;
  /** origin + path; the query is replaced by "?…". */
  url: string;
  kind: string;
  /** HTTP status, when an answer came. */
  status?: number | undefined;
  /** Why no answer came (network error, timeout, abort). */
  error?: string | undefined;
  /** Milliseconds until the answer's headers (or the failure). */
  durationMs: number;
  /** 1 for the first attempt, 2 for the first retry, ... */
  attempt: number;
}

export type RequestObserver = (event: RequestEvent) => void;

/** Requests per registry and kind ("manifest HEAD", "blob PUT", "token GET", ...). Shared by every transport of a run. */
export class RequestCounter {
  private readonly byRegistry = new Map<string, Map<string, number>>();

  add(registry: string, key: string): void {
    let kinds = this.byRegistry.get(registry);
    if (!kinds) this.byRegistry.set(registry, (kinds = new Map()));
    kinds.set(key, (kinds.get(key) ?? 0) + 1);
  }

  /** registry → "kind METHOD" → requests sent (every attempt and redirect hop counts). */
  counts(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    for (const [registry, kinds] of this.byRegistry) out[registry] = Object.fromEntries([...kinds].sort(([a], [b]) => a.localeCompare(b)));
    return out;
  }

  /** Total requests sent to one registry. */
  total(registry: string): number {
    let n = 0;
    for (const v of this.byRegistry.get(registry)?.values() ?? []) n += v;
    return n;
  }

  reset(): void {
    this.byRegistry.clear();
  }
}

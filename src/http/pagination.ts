// Paged listings (catalog, tags/list, referrers, Harbor's API): `Link: <url>; rel="next"`, resolved
// against the page that carried it. A next page must be on the origin of the first page (a Link to
// another host is an error, never followed: it would receive the listing's credentials or feed it
// made-up names); a page already visited or more pages than the cap end the listing with an error
// instead of looping forever.
import { UntrustedUrlError } from '../registry/errors.js';

/** Default cap on pages of one listing (at 1000 a page, 100 million names). */
export const MAX_PAGES = 100_000;

/** The raw `rel="next"` target of a Link header (several links, comma-separated, may be present). */
export function linkNext(link: string | string[] | undefined): string | undefined {
  const value = Array.isArray(link) ? link.join(',') : link;
  if (!value) return undefined;
  for (const part of value.split(/,(?=\s*<)/)) {
    const m = /^\s*<([^>]*)>(.*)$/s.exec(part);
    if (m && /;\s*rel="?next"?(?:\s|;|"|$)/i.test(m[2]!)) return m[1]!;
  }
  return undefined;
}

export interface PageCursorOptions {
  registry: string;
  repository?: string | undefined;
  /** What is being listed, for errors ("catalog", "tags of a/b"). */
  what: string;
  maxPages?: number | undefined;
}

/** Walks the pages of one listing: a visited set, a page cap, and next pages on the first page's origin only. */
export class PageCursor {
  private readonly visited = new Set<string>();
  private readonly origin: string;
  private readonly maxPages: number;

  constructor(
    first: URL,
    private readonly o: PageCursorOptions,
  ) {
    this.origin = first.origin;
    this.maxPages = o.maxPages ?? MAX_PAGES;
    this.visited.add(first.href);
  }

  get pages(): number {
    return this.visited.size;
  }

  /**
   * The next page after `current` given its Link header (or an explicit next URL), or undefined when
   * the listing is done. Throws UntrustedUrlError for another origin, a page seen before or too many pages.
   */
  next(current: URL, link: string | string[] | undefined | URL): URL | undefined {
    const raw = link instanceof URL ? link.href : linkNext(link);
    if (raw === undefined) return undefined;
    let url: URL;
    try {
      url = new URL(raw, current);
    } catch {
      throw new UntrustedUrlError(`${this.o.what}: unusable next-page link "${raw.slice(0, 200)}"`, { registry: this.o.registry, repository: this.o.repository });
    }
    if (url.origin !== this.origin) {
      throw new UntrustedUrlError(`${this.o.what}: the next-page link points at another origin (${url.origin}, not ${this.origin}); refusing to follow it`, {
        registry: this.o.registry,
        repository: this.o.repository,
      });
    }
    if (this.visited.has(url.href)) {
      throw new UntrustedUrlError(`${this.o.what}: the next-page link repeats a page already read (${url.pathname}); the listing loops`, {
        registry: this.o.registry,
        repository: this.o.repository,
      });
    }
    if (this.visited.size >= this.maxPages) {
      throw new UntrustedUrlError(`${this.o.what}: more than ${this.maxPages} pages; refusing to read on`, { registry: this.o.registry, repository: this.o.repository });
    }
    this.visited.add(url.href);
    return url;
  }
}

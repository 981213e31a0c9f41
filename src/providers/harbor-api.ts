// Listing a Harbor through its REST API v2.0 (api/v2.0/swagger.yaml), so robot accounts without
// catalog rights work and labels, artifact types and push times are known; plus the ChartMuseum API of
// Harbor <= 2.7 (defined in that release's api/swagger.yaml, the legacy v1-style spec, not in
// api/v2.0/swagger.yaml) and project management. Content never moves here: it goes over /v2/ with the registry
// client.
//
// Shapes and conventions (Harbor's swagger and its own replication adapter, src/pkg/reg/adapter/harbor):
// - lists page with `page` (from 1) and `page_size` (at most 100); the answer carries `X-Total-Count`
//   and `Link: <path?query>; rel="prev" , <path?query>; rel="next"` with paths relative to the host;
// - repository names come back project-prefixed ("library/nginx", "team/a/b"); in a URL the part after
//   the project is URL-encoded twice ("a/b" → "a%252Fb"), because Harbor decodes the path once before
//   routing (a single-encoded "a%2Fb" is a 404);
// - an artifact has `type` (IMAGE, CHART, CNAB, …), `digest`, `manifest_media_type`, `size`,
//   `push_time`, `tags[]` {name, push_time} and `labels[]` {name} (with_label=true); an empty list
//   may be missing, `null` or `[]` (all read the same). Harbor >= 2.5 leaves accessories (cosign
//   signatures, SBOMs, …) out of the artifact list itself, and Ferry copies them with their subject
//   through the referrers API; on Harbor >= 2.8 (every OCI subject referrer is an accessory too) it
//   asks with_accessory=true and only counts `accessories`, so an artifact without any needs no
//   referrer look-up on a rerun. Older
//   Harbor lists cosign's tag-scheme artifacts (`sha256-<hex>.sig`) like any other; an artifact whose
//   only tags are of that scheme is skipped;
// - a Go zero time ("0001-01-01T00:00:00Z") means "never" (pull_time) and is treated as unknown;
// - errors are `{"errors":[{"code","message"}]}`.
import type { Dispatcher } from 'undici';
import { basicAuthorizer } from '../http/auth.js';
import { readBodyText } from '../http/body.js';
import { PageCursor, linkNext } from '../http/pagination.js';
import { Transport } from '../http/transport.js';
import type { Authorizer } from '../http/types.js';
import type { ArtifactKind } from '../config/schema.js';
import type { SourceArtifact, TagInventoryEntry } from './types.js';
import { AuthError, RegistryError, isRepositoryScoped, parseErrorBody } from '../registry/errors.js';
import { isValidRepositoryName } from '../registry/media-types.js';

export interface HarborApiOptions {
  /** Harbor's base URL, e.g. https://harbor.example.com (a path prefix is kept). */
  url: string;
  username?: string | undefined;
  password?: string | undefined;
  /** The registry's transport (shared with its registry client: same origin, limits, back-off); built from the options below when absent. */
  transport?: Transport | undefined;
  /** undici dispatcher for TLS options (caFile, insecure), proxies or tests, when no transport is given; default: the global one. */
  dispatcher?: Dispatcher | undefined;
  /** The registry's name in the config, for errors (default: the URL's host). */
  registry?: string | undefined;
  /** Items per page, at most 100 (Harbor's maximum; default 100). */
  pageSize?: number | undefined;
  /** Per-request timeout in ms (default 60 s). */
  timeoutMs?: number | undefined;
  /** Retries after the first attempt for network failures, 429 and 502/503/504 (default 2). */
  retries?: number | undefined;
  /** Base delay between retries in ms (default 500). */
  retryDelayMs?: number | undefined;
}

export interface HarborProject {
  name: string;
  projectId?: number | undefined;
  public: boolean;
}

export interface HarborListOptions {
  /** Only repositories that may pass the rule's repository filters: others are not listed (no artifact requests). */
  repositoryMayMatch?: ((repository: string) => boolean) | undefined;
  /** Only these projects (e.g. CompiledFilters.projects): the project list is not read; missing ones are skipped. */
  projects?: string[] | undefined;
  /** Also list ChartMuseum charts (Harbor <= 2.7). */
  includeChartMuseum?: boolean | undefined;
  signal?: AbortSignal | undefined;
  /** One repository's trouble (an invalid name, its artifacts refused): reported here, the listing goes on. */
  onRepositoryProblem?: ((repository: string, message: string) => void) | undefined;
  /** Only these repositories, in this order (a cooperating worker's leased ones): projects are not enumerated. */
  repositories?: AsyncIterable<string> | undefined;
}

export interface ChartMuseumOptions {
  repositoryMayMatch?: ((repository: string) => boolean) | undefined;
  /** Look for a `.prov` next to each chart and set chartMuseum.provUrl when there is one (default true). */
  provenance?: boolean | undefined;
  signal?: AbortSignal | undefined;
}

// Swagger shapes (only the fields Ferry reads).
interface ProjectJson {
  project_id?: number;
  name: string;
  metadata?: { public?: string } | null;
}
interface RepositoryJson {
  name: string;
}
interface TagJson {
  name: string;
  push_time?: string | null;
}
interface LabelJson {
  name: string;
}
interface ArtifactJson {
  digest?: string;
  type?: string | null;
  manifest_media_type?: string | null;
  size?: number | null;
  push_time?: string | null;
  tags?: TagJson[] | null;
  labels?: LabelJson[] | null;
  /** with_accessory=true: signatures, SBOMs and subject referrers of the artifact (left out when none). */
  accessories?: unknown[] | null;
}
interface ChartInfoJson {
  name: string;
}
interface ChartVersionJson {
  name?: string;
  version: string;
  urls?: string[] | null;
  created?: string | null;
  labels?: LabelJson[] | null;
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  url: URL;
}

const MAX_BODY = 32 * 1024 * 1024;
/** Harbor's 500s are its own errors (a bad query, a database refusal), not worth a retry; gateways' are. */
const RETRY_STATUS: ReadonlySet<number> = new Set([408, 429, 502, 503, 504]);
/** Tags of cosign's tag scheme and the OCI referrers fallback: `sha256-<hex>` with an optional `.sig`/`.att`/`.sbom`. */
const ACCESSORY_TAG = /^sha256-[0-9a-f]{64}(?:\.[a-z]+)?$/;

/** Harbor's path form of a repository: the project, and the rest URL-encoded twice (a/b → a%252Fb). */
export function harborRepositoryPath(repository: string): { project: string; encoded: string } {
  const slash = repository.indexOf('/');
  if (slash <= 0 || slash === repository.length - 1) throw new RegistryError(`"${repository}" is not a Harbor repository name (project/name)`, { registry: 'harbor' });
  return { project: repository.slice(0, slash), encoded: encodeURIComponent(encodeURIComponent(repository.slice(slash + 1))) };
}

/** Ferry's kind for Harbor's artifact `type`: IMAGE → image, CHART → chart, anything else → artifact. */
export function harborKind(type: string | null | undefined): ArtifactKind | undefined {
  if (!type) return undefined;
  const t = type.toUpperCase();
  return t === 'IMAGE' ? 'image' : t === 'CHART' ? 'chart' : 'artifact';
}

/** Harbor's timestamps; Go's zero time and garbage are "unknown". */
export function harborTime(s: string | null | undefined): Date | undefined {
  if (!s) return undefined;
  const d = new Date(s);
  return Number.isNaN(d.getTime()) || d.getUTCFullYear() <= 1970 ? undefined : d;
}

/** The `rel="next"` target of a Link header, resolved against the page that carried it. */
export function nextLink(current: URL, link: string | string[] | undefined): URL | undefined {
  const raw = linkNext(link);
  if (raw === undefined) return undefined;
  const next = new URL(raw, current);
  // Harbor writes host-relative paths; behind a reverse proxy with a path prefix they lose it.
  if (next.origin === current.origin && next.pathname !== current.pathname && current.pathname.endsWith(next.pathname)) next.pathname = current.pathname;
  return next;
}

export class HarborApi {
  readonly registry: string;
  private readonly base: URL;
  private readonly auth: Authorizer | undefined;
  private readonly pageSize: number;
  private readonly transport: Transport;

  constructor(opts: HarborApiOptions) {
    this.base = new URL(opts.url.endsWith('/') ? opts.url : `${opts.url}/`);
    this.registry = opts.registry ?? this.base.host;
    // Basic credentials go in the header only (never in a URL), to Harbor's own origin only: a `next`
    // link or a chart URL on another host gets none. Never logged or put into an error.
    this.auth =
      opts.username !== undefined && opts.password !== undefined ? basicAuthorizer(this.base.origin, { username: opts.username, password: opts.password }) : undefined;
    this.pageSize = Math.min(100, Math.max(1, Math.floor(opts.pageSize ?? 100)));
    this.transport =
      opts.transport ??
      new Transport({
        name: this.registry,
        dispatcher: opts.dispatcher,
        useGlobalDispatcher: opts.dispatcher === undefined,
        retries: opts.retries ?? 2,
        retryDelayMs: opts.retryDelayMs,
        deadlineMs: opts.timeoutMs ?? 60_000,
        idleTimeoutMs: opts.timeoutMs ?? 60_000,
      });
  }

  /** A URL under Harbor's base URL (path given without a leading slash). */
  url(path: string): URL {
    return new URL(path.replace(/^\/+/, ''), this.base);
  }

  // ------------------------------------------------------------------------------------------------
  // listing

  /** Projects the credentials can see. */
  async *listProjects(signal?: AbortSignal): AsyncIterable<HarborProject> {
    for await (const p of this.pages<ProjectJson>(this.url('api/v2.0/projects'), signal)) {
      yield { name: p.name, projectId: p.project_id, public: p.metadata?.public === 'true' };
    }
  }

  /** Repository names of a project, project-prefixed ("library/nginx", "team/a/b"). */
  async *listRepositories(project: string, signal?: AbortSignal): AsyncIterable<string> {
    for await (const r of this.pages<RepositoryJson>(this.url(`api/v2.0/projects/${encodeURIComponent(project)}/repositories`), signal)) {
      yield r.name.startsWith(`${project}/`) ? r.name : `${project}/${r.name}`;
    }
  }

  private artifactsUrl(repository: string, withLabel: boolean, withAccessory = false): URL {
    const { project, encoded } = harborRepositoryPath(repository);
    const url = this.url(`api/v2.0/projects/${encodeURIComponent(project)}/repositories/${encoded}/artifacts`);
    url.searchParams.set('with_tag', 'true');
    url.searchParams.set('with_label', String(withLabel));
    url.searchParams.set('with_accessory', String(withAccessory));
    return url;
  }

  /**
   * The artifacts of one repository ("project/name"), page by page; tag-scheme accessories left out.
   * On Harbor >= 2.8 each artifact says how many accessories (referrers) it has (`referrers`), so a
   * rerun needs no referrer look-up for one that has none.
   */
  async *listRepositoryArtifacts(repository: string, signal?: AbortSignal): AsyncIterable<SourceArtifact> {
    const accessories = await this.listsEveryReferrer(signal);
    for await (const a of this.pages<ArtifactJson>(this.artifactsUrl(repository, true, accessories), signal, repository)) {
      if (!a.digest) continue;
      const listed = (a.tags ?? []).filter((t) => t && typeof t.name === 'string');
      const tags = listed.filter((t) => !ACCESSORY_TAG.test(t.name));
      if (listed.length > 0 && tags.length === 0) continue; // only cosign / referrers-fallback tags: an accessory
      const tagPushedAt: Record<string, Date> = {};
      for (const t of tags) {
        const d = harborTime(t.push_time);
        if (d) tagPushedAt[t.name] = d;
      }
      const artifact: SourceArtifact = {
        repository,
        digest: a.digest,
        tags: tags.map((t) => t.name),
        labels: (a.labels ?? []).map((l) => l.name),
        tagPushedAt,
      };
      const kind = harborKind(a.type);
      if (kind) artifact.kind = kind;
      const pushedAt = harborTime(a.push_time);
      if (pushedAt) artifact.pushedAt = pushedAt;
      if (typeof a.size === 'number' && a.size >= 0) artifact.size = a.size;
      if (a.manifest_media_type) artifact.mediaType = a.manifest_media_type;
      if (accessories) artifact.referrers = Array.isArray(a.accessories) ? a.accessories.length : 0;
      yield artifact;
    }
  }

  /**
   * Every tag of one repository with its digest, 100 artifacts a page (one request per 100 artifacts,
   * whatever their tags): the bulk inventory of a rerun, at the source or the destination. Push time
   * is the tag's own (when this Harbor got the tag), else the artifact's. A repository or project that
   * does not exist yields nothing.
   */
  async *listTagInventory(repository: string, signal?: AbortSignal): AsyncIterable<TagInventoryEntry> {
    try {
      for await (const a of this.pages<ArtifactJson>(this.artifactsUrl(repository, false), signal, repository)) {
        if (!a.digest) continue;
        for (const t of a.tags ?? []) {
          if (!t || typeof t.name !== 'string') continue;
          const entry: TagInventoryEntry = { tag: t.name, digest: a.digest };
          if (a.manifest_media_type) entry.mediaType = a.manifest_media_type;
          const pushedAt = harborTime(t.push_time) ?? harborTime(a.push_time);
          if (pushedAt) entry.pushedAt = pushedAt.toISOString();
          if (typeof a.size === 'number') entry.size = a.size;
          yield entry;
        }
      }
    } catch (err) {
      if (!(err instanceof RegistryError && err.status === 404)) throw err;
      // Harbor's 404: the repository or project does not exist, nothing to list. No Harbor API at
      // all (a plain registry configured as kind: harbor): say so, so the caller compares per tag.
      if (await this.isHarbor(signal)) return;
      throw new RegistryError(`no Harbor API at ${this.base.href} (GET api/v2.0/systeminfo failed): no bulk tag inventory; use kind: registry for a plain registry`, {
        registry: this.registry,
        repository,
        status: 404,
      });
    }
  }

  private harborCheck: Promise<string | undefined> | undefined;

  /** Harbor's version (GET api/v2.0/systeminfo, open to anonymous callers, asked once), undefined when no Harbor API answers. */
  private harborVersion(signal?: AbortSignal): Promise<string | undefined> {
    this.harborCheck ??= (async () => {
      const res = await this.send('GET', this.url('api/v2.0/systeminfo'), { signal });
      if (res.status !== 200) return undefined;
      try {
        const version = (JSON.parse(res.text) as { harbor_version?: unknown }).harbor_version;
        return typeof version === 'string' ? version : undefined;
      } catch {
        return undefined;
      }
    })().catch((err: unknown) => {
      this.harborCheck = undefined;
      throw err;
    });
    return this.harborCheck;
  }

  /** Whether a Harbor API answers at the base URL. */
  async isHarbor(signal?: AbortSignal): Promise<boolean> {
    return (await this.harborVersion(signal)) !== undefined;
  }

  /**
   * Whether the artifact listing's accessories are every referrer: Harbor 2.8 made OCI subject
   * referrers accessories (2.5 to 2.7 knew only cosign's tags). Unknown (older, unreadable, failed): no.
   */
  private async listsEveryReferrer(signal?: AbortSignal): Promise<boolean> {
    const version = await this.harborVersion(signal).catch((err: unknown) => {
      if (signal?.aborted) throw err;
      return undefined;
    });
    const m = version ? /^v?(\d+)\.(\d+)/.exec(version) : null;
    return m !== null && (Number(m[1]) > 2 || (Number(m[1]) === 2 && Number(m[2]) >= 8));
  }

  /** Everything: projects → repositories → artifacts, then (optionally) each project's ChartMuseum charts. */
  async *listArtifacts(options: HarborListOptions = {}): AsyncIterable<SourceArtifact> {
    const { signal } = options;
    if (options.repositories) {
      yield* this.listNamedRepositories(options.repositories, options);
      return;
    }
    const projects: AsyncIterable<string> | string[] = options.projects ?? this.projectNames(signal);
    for await (const project of projects) {
      signal?.throwIfAborted();
      // Repositories are read page by page while their artifacts are listed (never the whole project).
      const repositories = this.listRepositories(project, signal)[Symbol.asyncIterator]();
      let next: IteratorResult<string>;
      try {
        next = await repositories.next();
      } catch (err) {
        // A project named by the filters that does not exist (or was deleted meanwhile) has nothing to list.
        if (err instanceof RegistryError && err.status === 404) continue;
        throw err;
      }
      for (; !next.done; next = await repositories.next()) {
        const repository = next.value;
        if (options.repositoryMayMatch && !options.repositoryMayMatch(repository)) continue;
        yield* this.repositoryArtifacts(repository, options);
      }
      if (options.includeChartMuseum) yield* this.listChartMuseum(project, { repositoryMayMatch: options.repositoryMayMatch, signal });
    }
  }

  /** One repository's artifacts; its trouble is reported for it. Resolves false when Harbor has no such repository. */
  private async *repositoryArtifacts(repository: string, options: HarborListOptions): AsyncGenerator<SourceArtifact, boolean> {
    options.signal?.throwIfAborted();
    if (!isValidRepositoryName(repository)) {
      options.onRepositoryProblem?.(repository, `Harbor lists "${repository}", which is not a valid repository name; skipped`);
      return true;
    }
    try {
      yield* this.listRepositoryArtifacts(repository, options.signal);
      return true;
    } catch (err) {
      // One repository's trouble is that repository's problem, never the whole listing's; one
      // deleted while it was being listed (404) simply has nothing left to copy.
      if (!(err instanceof RegistryError) || !isRepositoryScoped(err)) throw err;
      if (err.status !== 404) options.onRepositoryProblem?.(repository, `artifacts could not be listed: ${err.message}`);
      return err.status !== 404;
    }
  }

  /**
   * Named repositories (a cooperating worker's units). A name Harbor has no OCI repository for may be
   * a ChartMuseum chart ("<project>/<chart>", as the full listing names them): its versions then.
   */
  private async *listNamedRepositories(names: AsyncIterable<string>, options: HarborListOptions): AsyncIterable<SourceArtifact> {
    for await (const repository of names) {
      const found = yield* this.repositoryArtifacts(repository, options);
      if (found || !options.includeChartMuseum || !repository.includes('/')) continue;
      const project = repository.slice(0, repository.indexOf('/'));
      yield* this.listChartMuseum(project, { repositoryMayMatch: (r) => r === repository, signal: options.signal });
    }
  }

  private async *projectNames(signal?: AbortSignal): AsyncIterable<string> {
    for await (const p of this.listProjects(signal)) yield p.name;
  }

  /**
   * Charts of a project's ChartMuseum repository (Harbor <= 2.7), one SourceArtifact per chart
   * version: repository "<project>/<chart>", tag = version ("+" written "_", as Helm does for OCI),
   * kind chart, labels, push time = the version's `created`, and `chartMuseum` with the absolute
   * download URL. A 404 means the Harbor has no ChartMuseum (>= 2.8, or not installed): nothing.
   */
  /**
   * Where Harbor's ChartMuseum serves a chart version's .tgz: `chartrepo/<project>/charts/<name>-<version>.tgz`,
   * or the version's own `urls[0]` (relative to `chartrepo/<project>/`, or absolute).
   */
  chartArchiveUrl(project: string, name: string, version: string, relative?: string): URL {
    return new URL(relative ?? `charts/${encodeURIComponent(`${name}-${version}.tgz`)}`, this.url(`chartrepo/${encodeURIComponent(project)}/`));
  }

  async *listChartMuseum(project: string, options: ChartMuseumOptions = {}): AsyncIterable<SourceArtifact> {
    const { signal } = options;
    const p = encodeURIComponent(project);
    const charts = await this.getJson<ChartInfoJson[]>(this.url(`api/chartrepo/${p}/charts`), { signal, notFound: 'undefined' });
    if (!Array.isArray(charts)) return;
    for (const chart of charts) {
      if (!chart || typeof chart.name !== 'string') continue;
      const repository = `${project}/${chart.name}`;
      if (options.repositoryMayMatch && !options.repositoryMayMatch(repository)) continue;
      const versions = await this.getJson<ChartVersionJson[]>(this.url(`api/chartrepo/${p}/charts/${encodeURIComponent(chart.name)}`), {
        signal,
        notFound: 'undefined',
        repository,
      });
      if (!Array.isArray(versions)) continue;
      for (const v of versions) {
        if (!v || typeof v.version !== 'string') continue;
        const relative = v.urls?.find((u) => typeof u === 'string' && u.length > 0) ?? `charts/${chart.name}-${v.version}.tgz`;
        const url = this.chartArchiveUrl(project, chart.name, v.version, relative).href;
        const tag = v.version.replace(/\+/g, '_');
        const created = harborTime(v.created);
        const chartMuseum: NonNullable<SourceArtifact['chartMuseum']> = { project, name: chart.name, version: v.version, url };
        if (options.provenance !== false && (await this.exists(new URL(`${url}.prov`), signal))) chartMuseum.provUrl = `${url}.prov`;
        yield {
          repository,
          tags: [tag],
          labels: (v.labels ?? []).map((l) => l.name),
          kind: 'chart',
          ...(created ? { pushedAt: created, tagPushedAt: { [tag]: created } } : {}),
          chartMuseum,
        };
      }
    }
  }

  // ------------------------------------------------------------------------------------------------
  // projects

  /** HEAD /api/v2.0/projects?project_name=: true when the project exists. */
  async projectExists(name: string, signal?: AbortSignal): Promise<boolean> {
    const url = this.url('api/v2.0/projects');
    url.searchParams.set('project_name', name);
    const res = await this.send('HEAD', url, { signal });
    if (res.status === 404) return false;
    if (res.status >= 200 && res.status < 300) return true;
    throw this.error('HEAD', res);
  }

  /** Creates a project (private unless `isPublic`); "exists" when Harbor answers 409. */
  async createProject(name: string, isPublic = false, signal?: AbortSignal): Promise<'created' | 'exists'> {
    const res = await this.send('POST', this.url('api/v2.0/projects'), {
      signal,
      body: JSON.stringify({ project_name: name, metadata: { public: String(isPublic) } }),
    });
    if (res.status === 409) return 'exists';
    if (res.status >= 200 && res.status < 300) return 'created';
    throw this.error('POST', res);
  }

  // ------------------------------------------------------------------------------------------------
  // HTTP

  /** Every item of a paged list, following Link rel="next" (X-Total-Count when a proxy dropped the Link). */
  private async *pages<T>(first: URL, signal?: AbortSignal, repository?: string): AsyncIterable<T> {
    let url: URL | undefined = new URL(first);
    url.searchParams.set('page', '1');
    url.searchParams.set('page_size', String(this.pageSize));
    const cursor = new PageCursor(url, { registry: this.registry, repository, what: `Harbor API GET ${first.pathname}` });
    let seen = 0;
    while (url) {
      const res = await this.send('GET', url, { signal });
      if (res.status < 200 || res.status >= 300) throw this.error('GET', res, repository);
      const items = this.parse<T[]>(res, repository);
      if (!Array.isArray(items)) throw new RegistryError(`Harbor API GET ${url.pathname}: expected a JSON array`, { registry: this.registry, repository, status: res.status });
      yield* items;
      seen += items.length;
      const linked = nextLink(url, res.headers.link);
      url = linked ? cursor.next(url, linked) : undefined;
      if (!url && items.length > 0) {
        const total = Number(res.headers['x-total-count']);
        const page = Number(res.url.searchParams.get('page') ?? 1);
        if (Number.isFinite(total) && seen < total) {
          const next = new URL(res.url);
          next.searchParams.set('page', String(page + 1));
          url = cursor.next(res.url, next);
        }
      }
    }
  }

  private async getJson<T>(url: URL, o: { signal?: AbortSignal | undefined; notFound: 'undefined'; repository?: string }): Promise<T | undefined> {
    const res = await this.send('GET', url, { signal: o.signal });
    if (res.status === 404) return undefined;
    if (res.status < 200 || res.status >= 300) throw this.error('GET', res, o.repository);
    try {
      return JSON.parse(res.text) as T;
    } catch {
      return undefined; // not JSON (e.g. a portal page): treated like "not there"
    }
  }

  /** GET that only asks "is it there" (ChartMuseum answers HEAD inconsistently); the body is discarded. */
  private async exists(url: URL, signal?: AbortSignal): Promise<boolean> {
    const res = await this.send('GET', url, { signal, discard: true });
    if (res.status === 404) return false;
    if (res.status >= 200 && res.status < 300) return true;
    throw this.error('GET', res);
  }

  private parse<T>(res: Answer, repository?: string): T {
    try {
      return JSON.parse(res.text) as T;
    } catch {
      throw new RegistryError(`Harbor API GET ${res.url.pathname}: the answer is not JSON`, { registry: this.registry, repository, status: res.status });
    }
  }

  private error(method: string, res: Answer, repository?: string): RegistryError {
    const { code, message } = parseErrorBody(res.text);
    const details = { registry: this.registry, repository, status: res.status, code, detail: message, method };
    const what = `Harbor API ${method} ${res.url.pathname}`;
    if (res.status === 401) return new AuthError(`${what}: the credentials were refused`, details);
    if (res.status === 403) return new AuthError(`${what}: the credentials lack the permission`, details);
    return new RegistryError(`${what} failed`, details);
  }

  private async send(method: 'GET' | 'HEAD' | 'POST', url: URL, o: { signal?: AbortSignal | undefined; body?: string; discard?: boolean }): Promise<Answer> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (o.body !== undefined) headers['content-type'] = 'application/json';
    const res = await this.transport.send({ method, url, headers, body: o.body ?? null, signal: o.signal, kind: 'api', auth: this.auth, retryStatus: RETRY_STATUS });
    let text = '';
    if (method === 'HEAD' || o.discard) await res.body.dump().catch(() => undefined);
    else text = await readBodyText(res, MAX_BODY, { registry: this.registry, what: `Harbor API answer ${url.pathname}` });
    return { status: res.statusCode, headers: res.headers, text, url: res.url };
  }
}


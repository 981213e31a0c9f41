// A stand-in for Harbor's REST API v2.0 and its ChartMuseum API (Harbor <= 2.7), answering with the
// shapes of Harbor's swagger (api/v2.0/swagger.yaml: Project, Repository, Artifact with Tag, Label and
// Accessory, Errors; ChartInfo / ChartVersion come from Harbor <= 2.7's api/swagger.yaml, the legacy
// spec that defines /chartrepo, not from api/v2.0) and Harbor's conventions, independently of
// src/providers:
//   - lists page with `page` / `page_size` (default 10; more than 100 is a 422 like go-swagger's
//     validation), answer `X-Total-Count` and `Link: <path?query>; rel="prev" , <…>; rel="next"` with
//     host-relative paths; `maxPageSize` (default 2) caps pages further so tests exercise paging;
//   - the request path is percent-decoded once before routing, as Go's server does, so a nested
//     repository must be double-encoded (`team/a%252Fb`); a single-encoded `a%2Fb` is a 404;
//   - `with_tag` (default true), `with_label` (default false), `with_accessory` (default false) shape
//     the artifacts; empty lists are `null`, as Harbor's Go slices serialize; artifacts newest first;
//   - accessories (cosign signatures, …) are never listed as artifacts themselves (Harbor >= 2.5),
//     unless `listAccessories` (Harbor < 2.5, which listed cosign's `sha256-<hex>.sig` artifacts);
//   - Basic auth against `users` (anonymous allowed when there are none); a user may be limited to
//     some projects (others are hidden from the project list and answer 403);
//   - POST /api/v2.0/projects (201 + Location, 409 when it exists, 400 for a bad name), HEAD
//     /api/v2.0/projects?project_name=;
//   - ChartMuseum: /api/chartrepo/{p}/charts, /api/chartrepo/{p}/charts/{name},
//     /chartrepo/{p}/charts/{file}.tgz(.prov); `chartMuseum: false` makes them 404 (Harbor >= 2.8);
//   - optionally /v2/ proxied to a real registry (`registryUrl`) so content is real;
//   - `inject()` answers the next matching requests with an error, for retry and error tests.
// Every request is logged (method, raw path, Basic user, status). Listens on 127.0.0.1, port 0.
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { request } from 'undici';
import { LOOPBACK, listenOnFreePort } from './ports.js';

export interface HarborStubTag {
  name: string;
  /** ISO time; default: the artifact's pushTime. */
  pushTime?: string;
}

export interface HarborStubArtifact {
  /** Project-prefixed repository, e.g. "library/nginx" or "team/a/b". */
  repository: string;
  digest: string;
  tags?: (string | HarborStubTag)[];
  labels?: string[];
  /** Harbor's artifact type: IMAGE (default), CHART, CNAB, UNKNOWN, … */
  type?: string;
  /** ISO time (default 2024-01-01T00:00:00Z). */
  pushTime?: string;
  size?: number;
  /** Digest of the subject: this artifact is an accessory of it (not listed itself, shown in `accessories`). */
  accessoryOf?: string;
  /** Accessory type (default signature.cosign). */
  accessoryType?: string;
}

export interface HarborStubChart {
  project: string;
  name: string;
  version: string;
  /** The .tgz bytes served under /chartrepo/{project}/charts/{name}-{version}.tgz. */
  content?: Buffer;
  /** A provenance file served next to it (.tgz.prov). */
  prov?: Buffer;
  created?: string;
  labels?: string[];
  appVersion?: string;
}

export interface HarborStubUser {
  password: string;
  /** Projects this user may see (default: all). */
  projects?: string[];
}

export interface HarborStubOptions {
  /** Projects (more are implied by artifacts and charts; those are private). */
  projects?: { name: string; public?: boolean }[];
  artifacts?: HarborStubArtifact[];
  charts?: HarborStubChart[];
  /** username → password (or {password, projects}); none = anonymous access. */
  users?: Record<string, string | HarborStubUser>;
  /** Page size cap below Harbor's 100, so paging is exercised (default 2). */
  maxPageSize?: number;
  /** false: no ChartMuseum (Harbor >= 2.8), /api/chartrepo and /chartrepo answer 404. Default true. */
  chartMuseum?: boolean;
  /** List accessories as plain artifacts (Harbor < 2.5). */
  listAccessories?: boolean;
  /** A real registry to which /v2/ is proxied. */
  registryUrl?: string;
  /** Harbor version whose fields to answer (default 2.11): '2.7' adds chart_count and tag.signed. */
  version?: string;
  /** How empty lists (tags, labels, accessories, …) are written: left out (default, as Harbor), null, or []. */
  emptyLists?: 'omit' | 'null' | 'empty';
  /** Fill `accessories` even when with_accessory=false (an answer that carries them anyway). */
  alwaysAccessories?: boolean;
  /** repository → status its artifact listing answers (a repository deleted or locked mid-listing). */
  artifactListingStatus?: Record<string, number>;
}

export interface HarborStubRequest {
  method: string;
  /** The raw request target as sent (path and query, still encoded). */
  path: string;
  /** The Basic username, when credentials were sent. */
  user?: string | undefined;
  status: number;
}

export interface HarborStubProject {
  id: number;
  name: string;
  public: boolean;
  created: boolean;
}

export interface HarborStub {
  url: string;
  requests: HarborStubRequest[];
  /** Projects by name (including those created through the API: `created: true`). */
  projects: Map<string, HarborStubProject>;
  /** Answers the next `times` requests whose raw path matches with `status` and a Harbor error body. */
  inject(match: RegExp, status: number, opts?: { times?: number; code?: string; retryAfter?: string }): void;
  close(): Promise<void>;
}

const ZERO_TIME = '0001-01-01T00:00:00.000Z';
const DEFAULT_TIME = '2024-01-01T00:00:00.000Z';
const PROJECT_NAME = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;

interface Injection {
  match: RegExp;
  status: number;
  times: number;
  code: string;
  retryAfter?: string | undefined;
}

export async function startHarborStub(opts: HarborStubOptions = {}): Promise<HarborStub> {
  const maxPageSize = opts.maxPageSize ?? 2;
  const artifacts = opts.artifacts ?? [];
  const charts = opts.charts ?? [];
  const chartMuseum = opts.chartMuseum ?? true;
  const requests: HarborStubRequest[] = [];
  const injections: Injection[] = [];
  const legacy = versionAtMost(opts.version ?? '2.11', '2.7');
  /** An empty list as this Harbor writes it (undefined = key left out by JSON.stringify). */
  const none = opts.emptyLists === 'null' ? null : opts.emptyLists === 'empty' ? [] : undefined;
  const list = <T>(items: T[] | undefined, enabled = true): T[] | null | undefined => (enabled && items && items.length ? items : none);

  const projects = new Map<string, HarborStubProject>();
  const addProject = (name: string, pub: boolean, created = false) => {
    if (!projects.has(name)) projects.set(name, { id: projects.size + 1, name, public: pub, created });
  };
  for (const p of opts.projects ?? []) addProject(p.name, p.public ?? false);
  for (const a of artifacts) addProject(a.repository.split('/')[0]!, false);
  for (const c of charts) addProject(c.project, false);

  const repositoryNames = [...new Set(artifacts.map((a) => a.repository))];
  const repoId = (name: string) => repositoryNames.indexOf(name) + 1;
  const artifactId = (a: HarborStubArtifact) => artifacts.indexOf(a) + 1;
  const tagsOf = (a: HarborStubArtifact): HarborStubTag[] => (a.tags ?? []).map((t) => (typeof t === 'string' ? { name: t } : t));

  // --- answers --------------------------------------------------------------------------------------
  const send = (res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}) => {
    const text = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'x-request-id': String(requests.length), ...headers });
    res.end(text);
  };
  const fail = (res: ServerResponse, status: number, code: string, message: string, headers: Record<string, string> = {}) =>
    send(res, status, { errors: [{ code, message }] }, headers);

  /** Harbor's paging: page/page_size, X-Total-Count, Link with prev/next as host-relative URLs. */
  const paged = (res: ServerResponse, url: URL, all: unknown[]) => {
    const page = Number(url.searchParams.get('page') ?? 1);
    const requested = Number(url.searchParams.get('page_size') ?? 10);
    if (!Number.isInteger(page) || page < 1 || !Number.isInteger(requested) || requested < 1) {
      return fail(res, 400, 'BAD_REQUEST', 'invalid page or page_size');
    }
    if (requested > 100) return fail(res, 422, 'UNPROCESSABLE_ENTITY', 'page_size in query should be less than or equal to 100');
    const size = Math.min(requested, maxPageSize);
    const items = all.slice((page - 1) * size, page * size);
    const link = (p: number) => {
      const u = new URL(url);
      u.searchParams.set('page', String(p));
      u.searchParams.set('page_size', String(requested));
      return `<${u.pathname}${u.search}>`;
    };
    const links: string[] = [];
    if (page > 1 && (page - 1) * size < all.length) links.push(`${link(page - 1)}; rel="prev"`);
    if (page * size < all.length) links.push(`${link(page + 1)}; rel="next"`);
    send(res, 200, items, { 'x-total-count': String(all.length), ...(links.length ? { link: links.join(' , ') } : {}) });
  };

  // --- auth -----------------------------------------------------------------------------------------
  const userOf = (req: IncomingMessage): { name?: string; ok: boolean; projects?: string[] | undefined } => {
    const header = req.headers.authorization;
    const users = opts.users;
    if (!header) return { ok: !users };
    const m = /^Basic\s+(.+)$/i.exec(header);
    if (!m) return { ok: false };
    const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return { ok: false };
    const name = decoded.slice(0, colon);
    const password = decoded.slice(colon + 1);
    if (!users) return { name, ok: true };
    const entry = users[name];
    const expected = typeof entry === 'string' ? entry : entry?.password;
    return { name, ok: entry !== undefined && expected === password, projects: typeof entry === 'object' ? entry.projects : undefined };
  };

  // --- JSON shapes ----------------------------------------------------------------------------------
  const projectJson = (p: HarborStubProject) => ({
    project_id: p.id,
    name: p.name,
    owner_id: 1,
    owner_name: 'admin',
    registry_id: null,
    repo_count: repositoryNames.filter((r) => r.startsWith(`${p.name}/`)).length,
    ...(legacy ? { chart_count: charts.filter((c) => c.project === p.name).length } : {}),
    creation_time: DEFAULT_TIME,
    update_time: DEFAULT_TIME,
    deleted: false,
    metadata: { public: String(p.public) },
  });
  const labelJson = (name: string, i: number) => ({
    id: i + 1,
    name,
    description: '',
    color: '#0065AB',
    scope: 'g',
    project_id: 0,
    creation_time: DEFAULT_TIME,
    update_time: DEFAULT_TIME,
  });
  const mediaTypeOf = (type: string) =>
    type === 'CHART' ? 'application/vnd.cncf.helm.config.v1+json' : type === 'IMAGE' ? 'application/vnd.oci.image.config.v1+json' : 'application/vnd.unknown.config.v1+json';
  const artifactJson = (a: HarborStubArtifact, q: URLSearchParams) => {
    const type = a.type ?? 'IMAGE';
    const push = a.pushTime ?? DEFAULT_TIME;
    const tags = tagsOf(a);
    const accessories = artifacts.filter((x) => x.accessoryOf === a.digest && x.repository === a.repository);
    return {
      id: artifactId(a),
      type,
      media_type: mediaTypeOf(type),
      manifest_media_type: 'application/vnd.oci.image.manifest.v1+json',
      project_id: projects.get(a.repository.split('/')[0]!)!.id,
      repository_id: repoId(a.repository),
      digest: a.digest,
      size: a.size ?? 1234,
      icon: '',
      push_time: push,
      pull_time: ZERO_TIME,
      extra_attrs: {},
      annotations: none,
      references: none,
      tags: list(
        tags.map((t, i) => ({
          id: artifactId(a) * 100 + i,
          repository_id: repoId(a.repository),
          artifact_id: artifactId(a),
          name: t.name,
          push_time: t.pushTime ?? push,
          pull_time: ZERO_TIME,
          immutable: false,
          ...(legacy ? { signed: false } : {}),
        })),
        q.get('with_tag') !== 'false',
      ),
      addition_links: { build_history: { href: `/api/v2.0/projects/x/repositories/y/artifacts/${a.digest}/additions/build_history`, absolute: false } },
      labels: list(a.labels?.map(labelJson), q.get('with_label') === 'true'),
      accessories: list(
        accessories.map((x) => ({
          id: artifactId(x),
          artifact_id: artifactId(x),
          subject_artifact_id: artifactId(a),
          subject_artifact_repo: a.repository,
          subject_artifact_digest: a.digest,
          size: x.size ?? 500,
          digest: x.digest,
          type: x.accessoryType ?? 'signature.cosign',
          icon: '',
          creation_time: x.pushTime ?? push,
        })),
        q.get('with_accessory') === 'true' || opts.alwaysAccessories === true,
      ),
    };
  };

  const visible = (project: string, user: { projects?: string[] | undefined }) => !user.projects || user.projects.includes(project);

  // --- routes ---------------------------------------------------------------------------------------
  async function route(req: IncomingMessage, res: ServerResponse, raw: string): Promise<void> {
    const method = req.method ?? 'GET';
    const [rawPath, rawQuery = ''] = raw.split(/\?(.*)/s) as [string, string?];
    // Go's server decodes the path once before routing.
    let path: string;
    try {
      path = decodeURIComponent(rawPath);
    } catch {
      return fail(res, 400, 'BAD_REQUEST', 'invalid escape in path');
    }
    const q = new URLSearchParams(rawQuery);
    const url = new URL(`http://stub${rawPath}?${rawQuery}`);

    if (path.startsWith('/v2/') || path === '/v2') {
      if (!opts.registryUrl) return fail(res, 404, 'NOT_FOUND', 'no registry behind this stub');
      return proxy(req, res, raw);
    }

    for (const inj of injections) {
      if (inj.times > 0 && inj.match.test(raw)) {
        inj.times--;
        return fail(res, inj.status, inj.code, `injected ${inj.status}`, inj.retryAfter ? { 'retry-after': inj.retryAfter } : {});
      }
    }

    if (path === '/api/v2.0/systeminfo' && method === 'GET') {
      // Open to anonymous callers, as in Harbor.
      return send(res, 200, { harbor_version: `v${opts.version ?? '2.11'}.0-stub`, auth_mode: 'db_auth', registry_url: 'harbor.stub', external_url: 'https://harbor.stub', project_creation_restriction: 'everyone', self_registration: false, has_ca_root: false, read_only: false, with_chartmuseum: chartMuseum, notification_enable: true });
    }
    const user = userOf(req);
    if (!user.ok) return fail(res, 401, 'UNAUTHORIZED', 'unauthorized');

    let m: RegExpExecArray | null;
    if (path === '/api/v2.0/projects') {
      if (method === 'HEAD') {
        const name = q.get('project_name');
        if (!name) return fail(res, 400, 'BAD_REQUEST', 'project_name is required');
        res.writeHead(projects.has(name) ? 200 : 404).end();
        return;
      }
      if (method === 'GET') {
        const name = q.get('name');
        const list = [...projects.values()].filter((p) => visible(p.name, user) && (!name || p.name.includes(name)));
        return paged(res, url, list.map(projectJson));
      }
      if (method === 'POST') {
        let body: { project_name?: unknown; public?: unknown; metadata?: { public?: unknown } };
        try {
          body = JSON.parse((await readAll(req)).toString('utf8')) as typeof body;
        } catch {
          return fail(res, 400, 'BAD_REQUEST', 'invalid JSON body');
        }
        const name = body.project_name;
        if (typeof name !== 'string' || name.length < 1 || name.length > 255 || !PROJECT_NAME.test(name)) {
          return fail(res, 400, 'BAD_REQUEST', `project name is not in lower case or contains illegal characters`);
        }
        if (body.metadata?.public !== undefined && typeof body.metadata.public !== 'string') {
          return fail(res, 400, 'BAD_REQUEST', 'metadata values must be strings');
        }
        if (projects.has(name)) return fail(res, 409, 'CONFLICT', `The project named ${name} already exists`);
        addProject(name, body.metadata?.public === 'true' || body.public === true, true);
        return send(res, 201, undefined, { location: `/api/v2.0/projects/${projects.get(name)!.id}` });
      }
      return fail(res, 405, 'METHOD_NOT_ALLOWED', 'method not allowed');
    }

    if ((m = /^\/api\/v2\.0\/projects\/([^/]+)\/repositories$/.exec(path)) && method === 'GET') {
      const project = m[1]!;
      if (!projects.has(project)) return fail(res, 404, 'NOT_FOUND', `project ${project} not found`);
      if (!visible(project, user)) return fail(res, 403, 'FORBIDDEN', 'forbidden');
      const repos = repositoryNames.filter((r) => r.startsWith(`${project}/`));
      return paged(
        res,
        url,
        repos.map((name) => ({
          id: repoId(name),
          project_id: projects.get(project)!.id,
          name,
          description: '',
          artifact_count: artifacts.filter((a) => a.repository === name && !a.accessoryOf).length,
          pull_count: 0,
          creation_time: DEFAULT_TIME,
          update_time: DEFAULT_TIME,
        })),
      );
    }

    if ((m = /^\/api\/v2\.0\/projects\/([^/]+)\/repositories\/([^/]+)\/artifacts$/.exec(path)) && method === 'GET') {
      const project = m[1]!;
      const repository = `${project}/${safeDecode(m[2]!)}`;
      if (!projects.has(project)) return fail(res, 404, 'NOT_FOUND', `project ${project} not found`);
      if (!visible(project, user)) return fail(res, 403, 'FORBIDDEN', 'forbidden');
      if (!repositoryNames.includes(repository)) return fail(res, 404, 'NOT_FOUND', `repository ${repository} not found`);
      const injected = opts.artifactListingStatus?.[repository];
      if (injected) return fail(res, injected, injected === 404 ? 'NOT_FOUND' : injected === 403 ? 'FORBIDDEN' : 'UNKNOWN', `injected by the stub (${injected})`);
      const list = artifacts
        .filter((a) => a.repository === repository && (opts.listAccessories || !a.accessoryOf))
        .sort((a, b) => Date.parse(b.pushTime ?? DEFAULT_TIME) - Date.parse(a.pushTime ?? DEFAULT_TIME));
      return paged(res, url, list.map((a) => artifactJson(a, q)));
    }

    if ((m = /^\/api\/chartrepo\/([^/]+)\/charts(?:\/([^/]+))?$/.exec(path)) && method === 'GET') {
      if (!chartMuseum) return fail(res, 404, 'NOT_FOUND', `no route for ${path}`);
      const project = m[1]!;
      if (!projects.has(project)) return fail(res, 404, 'NOT_FOUND', `project ${project} not found`);
      if (!visible(project, user)) return fail(res, 403, 'FORBIDDEN', 'forbidden');
      const mine = charts.filter((c) => c.project === project);
      if (!m[2]) {
        const names = [...new Set(mine.map((c) => c.name))].sort();
        return send(
          res,
          200,
          names.map((name) => {
            const versions = mine.filter((c) => c.name === name);
            return {
              name,
              total_versions: versions.length,
              latest_version: versions[versions.length - 1]!.version,
              created: versions[0]!.created ?? DEFAULT_TIME,
              updated: versions[versions.length - 1]!.created ?? DEFAULT_TIME,
              icon: '',
              home: '',
              deprecated: false,
            };
          }),
        );
      }
      const versions = mine.filter((c) => c.name === m![2]);
      if (!versions.length) return fail(res, 404, 'NOT_FOUND', `chart ${m[2]} not found`);
      return send(
        res,
        200,
        versions.map((c) => ({
          name: c.name,
          version: c.version,
          description: `${c.name} chart`,
          apiVersion: 'v2',
          appVersion: c.appVersion ?? c.version,
          engine: '',
          icon: '',
          urls: [`charts/${c.name}-${c.version}.tgz`],
          created: c.created ?? DEFAULT_TIME,
          removed: false,
          digest: createHash('sha256').update(c.content ?? Buffer.alloc(0)).digest('hex'),
          labels: (c.labels ?? []).map(labelJson),
        })),
      );
    }

    if ((m = /^\/chartrepo\/([^/]+)\/charts\/([^/]+)$/.exec(path)) && (method === 'GET' || method === 'HEAD')) {
      if (!chartMuseum) return fail(res, 404, 'NOT_FOUND', `no route for ${path}`);
      const project = m[1]!;
      if (!visible(project, user)) return fail(res, 403, 'FORBIDDEN', 'forbidden');
      const file = m[2]!;
      const chart = charts.find((c) => c.project === project && (file === `${c.name}-${c.version}.tgz` || file === `${c.name}-${c.version}.tgz.prov`));
      const body = chart && (file.endsWith('.prov') ? chart.prov : chart.content);
      if (!body) return fail(res, 404, 'NOT_FOUND', `${file} not found`);
      res.writeHead(200, { 'content-type': 'application/x-tar', 'content-length': String(body.length) });
      res.end(method === 'HEAD' ? undefined : body);
      return;
    }

    fail(res, 404, 'NOT_FOUND', `no route for ${method} ${path}`);
  }

  async function proxy(req: IncomingMessage, res: ServerResponse, raw: string): Promise<void> {
    const target = new URL(opts.registryUrl!);
    const headers = { ...req.headers } as Record<string, string>;
    delete headers.host;
    delete headers.connection;
    const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
    const upstream = await request(new URL(raw, target.origin), { method: req.method as 'GET', headers, body: hasBody ? req : null });
    const out: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(upstream.headers)) {
      if (v === undefined || k === 'connection' || k === 'transfer-encoding' || k === 'keep-alive') continue;
      out[k] = k === 'location' ? String(v).replace(target.origin, stub.url) : v;
    }
    res.writeHead(upstream.statusCode, out);
    for await (const chunk of upstream.body) res.write(chunk);
    res.end();
  }

  const server: Server = createServer((req, res) => {
    const raw = req.url ?? '/';
    const entry: HarborStubRequest = { method: req.method ?? 'GET', path: raw, user: userOf(req).name, status: 0 };
    requests.push(entry);
    res.on('finish', () => {
      entry.status = res.statusCode;
    });
    route(req, res, raw).catch((err: unknown) => {
      if (!res.headersSent) fail(res, 500, 'INTERNAL_SERVER_ERROR', (err as Error).message);
      else res.destroy();
    });
  });

  const port = await listenOnFreePort(server as unknown as import('node:net').Server);
  const stub: HarborStub = {
    url: `http://${LOOPBACK}:${port}`,
    requests,
    projects,
    inject(match, status, o = {}) {
      injections.push({ match, status, times: o.times ?? 1, code: o.code ?? (status === 429 ? 'TOO_MANY_REQUEST' : status >= 500 ? 'INTERNAL_SERVER_ERROR' : 'ERROR'), retryAfter: o.retryAfter });
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
  return stub;
}

/** "2.7" <= "2.10"-style comparison of dotted versions. */
function versionAtMost(version: string, max: string): boolean {
  const a = version.split('.').map(Number);
  const b = max.split('.').map(Number);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    if (x !== y) return x < y;
  }
  return true;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

async function readAll(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

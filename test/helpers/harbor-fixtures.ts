// A stand-in for Harbor's REST API v2.0 (shapes from Harbor's swagger: Project, Repository,
// Artifact with tags, labels, accessories), the ChartMuseum API of Harbor <= 2.7, and project
// creation — in front of a real registry, to which every /v2/ request is proxied so content is real.
// Pages are small (2 items) so paging via Link and X-Total-Count is exercised.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { request } from 'undici';
import { LOOPBACK, listenOnFreePort } from './ports.js';

export interface HarborFixtureArtifact {
  repository: string;
  digest: string;
  tags: string[];
  labels?: string[];
  type?: 'IMAGE' | 'CHART' | 'CNAB' | 'UNKNOWN';
  pushTime?: string;
  tagPushTimes?: Record<string, string>;
  /** Listed only as an accessory of another artifact: Ferry must not list it itself. */
  accessoryOf?: string;
}

export interface HarborFixtureChart {
  project: string;
  name: string;
  version: string;
  tgz: Buffer;
  prov?: Buffer;
  created?: string;
}

export interface HarborStubOptions {
  /** The real registry behind /v2/. */
  registryUrl: string;
  projects?: { name: string; public?: boolean }[];
  artifacts?: HarborFixtureArtifact[];
  charts?: HarborFixtureChart[];
  /** Basic credentials accepted by the API; undefined = anonymous allowed. */
  user?: { username: string; password: string };
  /** Answer /api/chartrepo with 404 (Harbor >= 2.8). */
  noChartMuseum?: boolean;
  pageSize?: number;
}

export interface HarborStub {
  url: string;
  /** Projects by name → public. Projects created through the API appear here. */
  projects: Map<string, boolean>;
  requests: { method: string; path: string }[];
  close(): Promise<void>;
}

export async function startHarborStub(opts: HarborStubOptions): Promise<HarborStub> {
  const projects = new Map<string, boolean>((opts.projects ?? []).map((p) => [p.name, p.public ?? false]));
  const requests: { method: string; path: string }[] = [];
  const pageSize = opts.pageSize ?? 2;
  const target = new URL(opts.registryUrl);
  let base = '';

  const authorized = (req: IncomingMessage) => {
    if (!opts.user) return true;
    const h = req.headers.authorization ?? '';
    return h === `Basic ${Buffer.from(`${opts.user.username}:${opts.user.password}`).toString('base64')}`;
  };
  const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };
  const error = (res: ServerResponse, status: number, code: string, message: string) => json(res, status, { errors: [{ code, message }] });
  const paged = (res: ServerResponse, url: URL, all: unknown[]) => {
    const page = Math.max(1, Number(url.searchParams.get('page') ?? 1));
    const items = all.slice((page - 1) * pageSize, page * pageSize);
    const headers: Record<string, string> = { 'x-total-count': String(all.length) };
    if (page * pageSize < all.length) {
      const next = new URL(url);
      next.searchParams.set('page', String(page + 1));
      next.searchParams.set('page_size', String(pageSize));
      headers.link = `<${next.pathname}${next.search}>; rel="next"`;
    }
    json(res, 200, items, headers);
  };

  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', base);
    requests.push({ method: req.method ?? 'GET', path: req.url ?? '/' });
    try {
      if (url.pathname.startsWith('/v2/')) return await proxy(req, res);
      if (!authorized(req)) return error(res, 401, 'UNAUTHORIZED', 'unauthorized');
      const raw = req.url ?? '/';
      let m: RegExpExecArray | null;
      if (url.pathname === '/api/v2.0/projects' && req.method === 'HEAD') {
        res.writeHead(projects.has(url.searchParams.get('project_name') ?? '') ? 200 : 404).end();
        return;
      }
      if (url.pathname === '/api/v2.0/projects' && req.method === 'GET') {
        return paged(res, url, [...projects].map(([name, pub], i) => ({ project_id: i + 1, name, metadata: { public: String(pub) } })));
      }
      if (url.pathname === '/api/v2.0/projects' && req.method === 'POST') {
        const body = JSON.parse((await readAll(req)).toString()) as { project_name: string; metadata?: { public?: string } };
        if (projects.has(body.project_name)) return error(res, 409, 'CONFLICT', `The project named ${body.project_name} already exists`);
        projects.set(body.project_name, body.metadata?.public === 'true');
        res.writeHead(201, { location: `/api/v2.0/projects/${projects.size}` }).end();
        return;
      }
      if ((m = /^\/api\/v2\.0\/projects\/([^/]+)\/repositories$/.exec(url.pathname))) {
        const project = decodeURIComponent(m[1]!);
        const repos = [...new Set((opts.artifacts ?? []).filter((a) => a.repository.startsWith(`${project}/`)).map((a) => a.repository))];
        return paged(res, url, repos.map((name, i) => ({ id: i + 1, name, artifact_count: 1 })));
      }
      // Harbor wants the repository part double-encoded: a raw "%2F" (single-encoded) is a 404.
      if ((m = /^\/api\/v2\.0\/projects\/([^/]+)\/repositories\/([^/?]+)\/artifacts/.exec(raw))) {
        const project = decodeURIComponent(m[1]!);
        const once = decodeURIComponent(m[2]!);
        if (/%2F/i.test(m[2]!) && !/%252F/i.test(m[2]!)) return error(res, 404, 'NOT_FOUND', 'repository not found');
        const repository = `${project}/${decodeURIComponent(once)}`;
        const arts = (opts.artifacts ?? []).filter((a) => a.repository === repository && !a.accessoryOf);
        if (url.searchParams.get('with_tag') !== 'true') return error(res, 400, 'BAD_REQUEST', 'test stub expects with_tag=true');
        return paged(
          res,
          url,
          arts.map((a) => ({
            digest: a.digest,
            type: a.type ?? 'IMAGE',
            push_time: a.pushTime ?? '2024-01-01T00:00:00.000Z',
            tags: a.tags.map((t) => ({ name: t, push_time: a.tagPushTimes?.[t] ?? a.pushTime ?? '2024-01-01T00:00:00.000Z' })),
            labels: url.searchParams.get('with_label') === 'true' ? (a.labels ?? []).map((name, id) => ({ id, name })) : null,
            accessories: (opts.artifacts ?? []).filter((x) => x.accessoryOf === a.digest).map((x) => ({ digest: x.digest, type: 'signature.cosign' })),
          })),
        );
      }
      if ((m = /^\/api\/chartrepo\/([^/]+)\/charts(?:\/([^/]+))?$/.exec(url.pathname))) {
        if (opts.noChartMuseum) return error(res, 404, 'NOT_FOUND', 'not found');
        const project = decodeURIComponent(m[1]!);
        const charts = (opts.charts ?? []).filter((c) => c.project === project);
        if (!m[2]) {
          const names = [...new Set(charts.map((c) => c.name))];
          return json(res, 200, names.map((name) => ({ name, total_versions: charts.filter((c) => c.name === name).length })));
        }
        const name = decodeURIComponent(m[2]);
        return json(
          res,
          200,
          charts.filter((c) => c.name === name).map((c) => ({ name: c.name, version: c.version, urls: [`charts/${c.name}-${c.version}.tgz`], created: c.created ?? '2023-05-01T00:00:00Z', digest: '' })),
        );
      }
      if ((m = /^\/chartrepo\/([^/]+)\/charts\/(.+)\.(tgz|tgz\.prov)$/.exec(url.pathname))) {
        const project = decodeURIComponent(m[1]!);
        const chart = (opts.charts ?? []).find((c) => c.project === project && `${c.name}-${c.version}` === m![2]);
        const body = m[3] === 'tgz' ? chart?.tgz : chart?.prov;
        if (!body) return error(res, 404, 'NOT_FOUND', 'chart not found');
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(body.length) }).end(body);
        return;
      }
      error(res, 404, 'NOT_FOUND', `no route ${req.method} ${url.pathname}`);
    } catch (err) {
      if (!res.headersSent) error(res, 500, 'UNKNOWN', (err as Error).message);
      else res.destroy();
    }
  });

  async function proxy(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const headers = { ...req.headers } as Record<string, string>;
    delete headers.host;
    delete headers.connection;
    const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
    const upstream = await request(new URL(req.url ?? '/', target.origin), {
      method: req.method as 'GET',
      headers,
      body: hasBody ? req : null,
    });
    const out: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(upstream.headers)) {
      if (v === undefined || k === 'connection' || k === 'transfer-encoding' || k === 'keep-alive') continue;
      out[k] = k === 'location' ? String(v).replace(target.origin, base) : v;
    }
    res.writeHead(upstream.statusCode, out);
    for await (const chunk of upstream.body) res.write(chunk);
    res.end();
  }

  const port = await listenOnFreePort(server as unknown as import('node:net').Server);
  base = `http://${LOOPBACK}:${port}`;
  return {
    url: base,
    projects,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function readAll(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

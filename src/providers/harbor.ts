// Harbor: listing through the REST API v2.0 (robot accounts without catalog rights work, and labels,
// artifact types and push times are known), projects created when missing, ChartMuseum charts of
// Harbor <= 2.7. Content always moves over /v2/ with the generic client.
import type { RegistryConfig } from '../config/schema.js';
import type { SourceArtifact } from '../plan/types.js';
import { nextPage, type RegistryClient } from '../registry/client.js';
import { RegistryError, parseErrorBody } from '../registry/errors.js';
import { headerValue, readText } from '../registry/http.js';
import { OncePerKey } from './cloud-http.js';
import { GenericProvider, probe } from './generic.js';
import { validateHarborProject } from './names.js';
import type { ListOptions } from './types.js';

interface HarborProject {
  name: string;
}
interface HarborRepository {
  name: string;
}
interface HarborArtifact {
  digest: string;
  type?: string;
  push_time?: string;
  tags?: { name: string; push_time?: string }[] | null;
  labels?: { name: string }[] | null;
}
interface ChartInfo {
  name: string;
}
interface ChartVersion {
  name: string;
  version: string;
  urls?: string[];
  digest?: string;
  created?: string;
}

const PAGE_SIZE = 100;

/** Harbor's path form of a repository inside a project: the rest of the name URL-encoded twice (a/b → a%252Fb). */
export function harborRepositoryPath(repository: string): { project: string; encoded: string } {
  const [project, ...rest] = repository.split('/');
  return { project: project!, encoded: encodeURIComponent(encodeURIComponent(rest.join('/'))) };
}

function kindOf(type: string | undefined): SourceArtifact['kind'] {
  if (!type) return undefined;
  const t = type.toUpperCase();
  return t === 'IMAGE' ? 'image' : t === 'CHART' ? 'chart' : 'artifact';
}

function date(s: string | undefined): Date | undefined {
  if (!s) return undefined;
  const d = new Date(s);
  return Number.isNaN(d.getTime()) || d.getTime() <= 0 ? undefined : d;
}

export class HarborProvider extends GenericProvider {
  private readonly projects = new OncePerKey<void>();

  constructor(name: string, config: RegistryConfig, client: RegistryClient) {
    super(name, config, client);
  }

  private authorization(): Record<string, string> {
    const { username, password } = this.config;
    return username !== undefined && password !== undefined ? { authorization: `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}` } : {};
  }

  /** One API call; 404 → undefined. */
  private async api<T>(method: 'GET' | 'POST' | 'HEAD', path: string | URL, body?: unknown): Promise<{ data: T | undefined; status: number; next?: URL | undefined } | undefined> {
    const url = typeof path === 'string' ? this.client.url(path.replace(/^\//, '')) : path;
    const res = await this.client.http.send({
      method,
      url,
      headers: { accept: 'application/json', ...this.authorization(), ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : null,
    });
    const text = method === 'HEAD' ? '' : await readText(res);
    if (method === 'HEAD') await res.body.dump().catch(() => undefined);
    if (res.statusCode === 404) return undefined;
    if (res.statusCode >= 400) {
      const { code, message } = parseErrorBody(text);
      throw new RegistryError(`Harbor API ${method} ${url.pathname} failed`, { registry: this.name, status: res.statusCode, code, detail: message });
    }
    return { data: text ? (JSON.parse(text) as T) : undefined, status: res.statusCode, next: nextPage(url, headerValue(res.headers, 'link')) };
  }

  /** Every page of a list endpoint, following `Link: rel="next"`. */
  private async *pages<T>(path: string): AsyncIterable<T> {
    let url: URL | undefined = this.client.url(`${path}${path.includes('?') ? '&' : '?'}page=1&page_size=${PAGE_SIZE}`);
    while (url) {
      const page: Awaited<ReturnType<typeof this.api<T[]>>> = await this.api<T[]>('GET', url);
      if (!page) return;
      yield* page.data ?? [];
      url = page.next;
    }
  }

  override async *listArtifacts(options: ListOptions = {}): AsyncIterable<SourceArtifact> {
    const probeProjects = await this.api<HarborProject[]>('GET', `api/v2.0/projects?page=1&page_size=1`).catch((err: unknown) => {
      if (err instanceof RegistryError && err.status === 401) throw err;
      return undefined;
    });
    if (!probeProjects) {
      // Not a Harbor API (or an old one): list like any registry.
      yield* super.listArtifacts(options);
      return;
    }
    for await (const project of this.pages<HarborProject>('api/v2.0/projects')) {
      if (options.signal?.aborted) return;
      for await (const repo of this.pages<HarborRepository>(`api/v2.0/projects/${encodeURIComponent(project.name)}/repositories`)) {
        if (options.repositoryMayMatch && !options.repositoryMayMatch(repo.name)) continue;
        const { encoded } = harborRepositoryPath(repo.name);
        const path = `api/v2.0/projects/${encodeURIComponent(project.name)}/repositories/${encoded}/artifacts?with_tag=true&with_label=true&with_accessory=false`;
        for await (const a of this.pages<HarborArtifact>(path)) {
          const tags = (a.tags ?? []).map((t) => t.name);
          const tagPushedAt: Record<string, Date> = {};
          for (const t of a.tags ?? []) {
            const d = date(t.push_time);
            if (d) tagPushedAt[t.name] = d;
          }
          yield {
            repository: repo.name,
            digest: a.digest,
            tags,
            labels: (a.labels ?? []).map((l) => l.name),
            kind: kindOf(a.type),
            tagPushedAt,
            pushedAt: date(a.push_time),
          };
        }
      }
      if (options.includeChartMuseum && this.config.harbor?.chartMuseum !== false) yield* this.listChartMuseum(project.name, options);
    }
  }

  /** Charts of a ChartMuseum repository (Harbor <= 2.7); nothing when Harbor has no ChartMuseum (404). */
  async *listChartMuseum(project: string, options: ListOptions = {}): AsyncIterable<SourceArtifact> {
    const charts = await this.api<ChartInfo[]>('GET', `api/chartrepo/${encodeURIComponent(project)}/charts`).catch(() => undefined);
    for (const chart of charts?.data ?? []) {
      const repository = `${project}/${chart.name}`;
      if (options.repositoryMayMatch && !options.repositoryMayMatch(repository)) continue;
      const versions = await this.api<ChartVersion[]>('GET', `api/chartrepo/${encodeURIComponent(project)}/charts/${encodeURIComponent(chart.name)}`);
      for (const v of versions?.data ?? []) {
        const url = v.urls?.[0] ?? `charts/${chart.name}-${v.version}.tgz`;
        yield {
          repository,
          tags: [v.version.replace(/\+/g, '_')],
          kind: 'chart',
          pushedAt: date(v.created),
          chartMuseum: { project, name: chart.name, version: v.version, url: new URL(url, this.client.url(`chartrepo/${encodeURIComponent(project)}/`)).href },
        };
      }
    }
  }

  override validateDestination(repository: string): string | undefined {
    const project = repository.split('/')[0]!;
    if (!repository.includes('/')) return `"${repository}": Harbor repositories live in a project (project/name); set destinationNamespace`;
    return validateHarborProject(project) ?? super.validateDestination(repository);
  }

  /** Creates the destination project when missing (private unless harbor.publicProjects), once per run. */
  override prepareDestination(repository: string): Promise<void> {
    const project = repository.split('/')[0]!;
    return this.projects.run(project, async () => {
      const exists = await this.api('HEAD', `api/v2.0/projects?project_name=${encodeURIComponent(project)}`);
      if (exists) return;
      try {
        await this.api('POST', 'api/v2.0/projects', {
          project_name: project,
          metadata: { public: String(this.config.harbor?.publicProjects ?? false) },
        });
      } catch (err) {
        if (err instanceof RegistryError && err.status === 409) return; // created meanwhile
        throw err;
      }
    });
  }

  protected override async probeExtra(): Promise<Record<string, boolean | string>> {
    return { harborApi: await probe(() => this.api('GET', 'api/v2.0/projects?page=1&page_size=1')) };
  }
}

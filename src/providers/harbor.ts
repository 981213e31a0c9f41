// Harbor: listing through the REST API v2.0 (HarborApi: robot accounts without catalog rights work,
// labels, artifact types and push times are known, ChartMuseum charts of Harbor <= 2.7), projects
// created when missing, and the catalog as a fallback where the API is absent. Content always moves
// over /v2/ with the generic client.
import type { RegistryConfig } from '../config/schema.js';
import type { RegistryClient } from '../registry/client.js';
import { RegistryError } from '../registry/errors.js';
import { OncePerKey } from './cloud-http.js';
import { GenericProvider, probe } from './generic.js';
import type { HarborApi } from './harbor-api.js';
import { validateHarborProject } from './names.js';
import type { ChartMuseumRef, ListOptions, SourceArtifact, TagInventoryEntry } from './types.js';

export class HarborProvider extends GenericProvider {
  private readonly projects = new OncePerKey<void>();

  constructor(
    name: string,
    config: RegistryConfig,
    client: RegistryClient,
    readonly api: HarborApi,
  ) {
    super(name, config, client);
  }

  override async *listArtifacts(options: ListOptions = {}): AsyncIterable<SourceArtifact> {
    const listing = this.api.listArtifacts({
      repositoryMayMatch: options.repositoryMayMatch,
      includeChartMuseum: options.includeChartMuseum && this.config.harbor?.chartMuseum !== false,
      signal: options.signal,
      onRepositoryProblem: options.onRepositoryProblem,
      repositories: options.repositories,
    });
    const iterator = listing[Symbol.asyncIterator]();
    let first: IteratorResult<SourceArtifact>;
    try {
      first = await iterator.next();
    } catch (err) {
      // No Harbor API at this URL (a plain registry configured as kind: harbor, or an API path
      // blocked by a proxy): list through the catalog instead.
      if (err instanceof RegistryError && err.status === 404) {
        yield* super.listArtifacts(options);
        return;
      }
      throw err;
    }
    if (first.done) return;
    yield first.value;
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value;
  }

  /** The .tgz of a ChartMuseum chart version: the URL the listing gave, else Harbor's ChartMuseum layout (webhook events carry none). */
  chartArchiveUrl(chart: ChartMuseumRef): URL {
    return chart.url ? new URL(chart.url) : this.api.chartArchiveUrl(chart.project, chart.name, chart.version);
  }

  /** Tags with digests from the artifact listing (API v2.0, 100 artifacts a page), source or destination side. */
  listTagInventory(repository: string, opts: { signal?: AbortSignal } = {}): AsyncIterable<TagInventoryEntry> {
    return this.api.listTagInventory(repository, opts.signal);
  }

  override validateDestination(repository: string): string | undefined {
    if (!repository.includes('/')) return `"${repository}": Harbor repositories live in a project (project/name); set destinationNamespace`;
    return validateHarborProject(repository.split('/')[0]!) ?? super.validateDestination(repository);
  }

  /** Creates the destination project when missing (private unless harbor.publicProjects), once per run. */
  override prepareDestination(repository: string): Promise<void> {
    const project = repository.split('/')[0]!;
    return this.projects.run(project, async () => {
      if (await this.api.projectExists(project)) return;
      await this.api.createProject(project, this.config.harbor?.publicProjects ?? false);
    });
  }

  protected override async probeExtra(): Promise<Record<string, boolean | string>> {
    return {
      harborApi: await probe(async () => {
        for await (const _ of this.api.listProjects()) break;
      }),
    };
  }
}

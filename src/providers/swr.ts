// Huawei Cloud / Open Telekom Cloud SWR: login key derived from AK/SK (or an explicit docker
// credential), organizations created through the SWR API (AK/SK signed) or, without AK/SK, through the
// registry host's undocumented dockyard endpoint as Harbor's Huawei adapter does. Repositories are
// exactly organization/name.
import type { RegistryConfig } from '../config/schema.js';
import type { RegistryClient } from '../registry/client.js';
import { GenericProvider, probe } from './generic.js';
import { validateSwrRepository } from './names.js';
import { SwrApi, type SwrDockyard } from './swr-api.js';
import { listThroughInventory } from './inventory-listing.js';
import type { ListOptions, SourceArtifact, TagInventoryEntry } from './types.js';

/** SWR throttles at 20 push requests/s and 20 concurrent layer pushes per tenant. */
export const SWR_DEFAULT_LIMITS = { requestsPerSecond: 20, maxConcurrency: 16 } as const;

export class SwrProvider extends GenericProvider {
  constructor(
    name: string,
    config: RegistryConfig,
    client: RegistryClient,
    private readonly namespaces: SwrApi | SwrDockyard | undefined,
  ) {
    super(name, config, client);
    const api = namespaces instanceof SwrApi ? namespaces : undefined;
    if (api) this.listTagInventory = (repository, opts) => swrInventory(api, repository, opts?.signal);
  }

  /**
   * The repository's tags with digests from SWR's tag listing (100 a page), when AK/SK are configured;
   * without them the method is absent and the engine HEADs per tag.
   */
  readonly listTagInventory?: (repository: string, opts?: { signal?: AbortSignal }) => AsyncIterable<TagInventoryEntry>;

  /**
   * With AK/SK, the source listing comes from the SWR API (GET /v2/manage/repos, then each
   * repository's tags): digests and push times known, one request per 100 tags. Without AK/SK, or
   * keys the API refuses, through the registry catalog.
   */
  override listArtifacts(options: ListOptions = {}): AsyncIterable<SourceArtifact> {
    const api = this.namespaces instanceof SwrApi ? this.namespaces : undefined;
    if (!api || !this.listTagInventory) return super.listArtifacts(options);
    return listThroughInventory(options.repositories ?? api.listRepositories(), (r) => this.listTagInventory!(r, { signal: options.signal }), options, () => super.listArtifacts(options));
  }

  override validateDestination(repository: string): string | undefined {
    return validateSwrRepository(repository);
  }

  override async prepareDestination(repository: string): Promise<void> {
    await this.namespaces?.ensureNamespace(repository.split('/')[0]!);
  }

  protected override async probeExtra(): Promise<Record<string, boolean | string>> {
    if (!this.namespaces) return { namespaceManagement: 'no credentials for organization management' };
    const api = this.namespaces instanceof SwrApi ? this.namespaces : undefined;
    return {
      namespaceManagement: await probe(() => this.namespaces!.describeNamespace('ferry-check')),
      // GET /v2/manage/repos (one page): what the bulk listing and inventory need.
      tagInventory: api
        ? await probe(async () => {
            for await (const _ of api.listRepositories()) break;
          })
        : 'no AK/SK: tags are checked one by one',
    };
  }
}

async function* swrInventory(api: SwrApi, repository: string, signal?: AbortSignal): AsyncIterable<TagInventoryEntry> {
  for await (const t of api.listRepositoryTags(repository)) {
    signal?.throwIfAborted();
    if (!t.Tag || !t.digest) continue;
    const entry: TagInventoryEntry = { tag: t.Tag, digest: t.digest };
    const updated = t.updated ? new Date(t.updated) : undefined;
    if (updated && !Number.isNaN(updated.getTime())) entry.pushedAt = updated.toISOString();
    if (typeof t.size === 'number') entry.size = t.size;
    yield entry;
  }
}

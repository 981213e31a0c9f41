// Tencent Cloud TCR Enterprise: registry login from a long-term instance credential, or temporary
// instance tokens minted with API keys (CreateInstanceToken, refreshed before expiry); namespaces
// created through the TCR API before the first push into them.
import type { RegistryConfig } from '../config/schema.js';
import type { RegistryClient } from '../registry/client.js';
import { RegistryError } from '../registry/errors.js';
import { cancelUpload, startUpload } from '../registry/upload.js';
import { OncePerKey } from './cloud-http.js';
import { GenericProvider, probe } from './generic.js';
import { validateTcrRepository } from './names.js';
import { tcrTime, type TcrApi } from './tcr-api.js';
import { listThroughInventory } from './inventory-listing.js';
import type { ListOptions, SourceArtifact, TagInventoryEntry } from './types.js';

export class TcrProvider extends GenericProvider {
  private readonly checkedNamespaces = new OncePerKey<void>();

  constructor(
    name: string,
    config: RegistryConfig,
    client: RegistryClient,
    /** Present when tcr.secretId/secretKey are configured. */
    private readonly api: TcrApi | undefined,
  ) {
    super(name, config, client);
    if (api) this.listTagInventory = (repository, opts) => tcrInventory(api, repository, opts?.signal);
  }

  /**
   * With API keys, the source listing comes from the TCR API (DescribeRepositories, DescribeImages):
   * digests and push times known, one request per 100 tags. Without keys, or keys the API refuses
   * for listing, through the registry catalog.
   */
  override listArtifacts(options: ListOptions = {}): AsyncIterable<SourceArtifact> {
    const api = this.api;
    if (!api || !this.listTagInventory) return super.listArtifacts(options);
    return listThroughInventory(options.repositories ?? api.listRepositories(), (r) => this.listTagInventory!(r, { signal: options.signal }), options, () => super.listArtifacts(options));
  }

  override validateDestination(repository: string): string | undefined {
    return validateTcrRepository(repository);
  }

  override prepareDestination(repository: string): Promise<void> {
    const namespace = repository.split('/')[0]!;
    if (this.api) return this.api.ensureNamespace(namespace);
    // Without API keys Ferry cannot create namespaces: check once that pushing is possible and say
    // what to do when it is not, instead of failing every artifact with a bare DENIED.
    return this.checkedNamespaces.run(namespace, async () => {
      try {
        const session = await startUpload(this.client, repository);
        if (!session.mounted) await cancelUpload(this.client, repository, session.location);
      } catch (err) {
        if (err instanceof RegistryError && (err.status === 403 || err.status === 404 || err.status === 401)) {
          throw new RegistryError(
            `cannot push into namespace "${namespace}": create it in the TCR console, or give tcr.secretId/secretKey/region/instanceId so Ferry creates it`,
            { registry: this.name, repository, status: err.status, code: err.code, detail: err.detail },
          );
        }
        throw err;
      }
    });
  }

  /**
   * The repository's tags with digests from DescribeImages (100 a page), when API keys are configured;
   * without them the method is absent and the engine HEADs per tag. UpdateTime is when the tag was
   * last pushed to this instance.
   */
  readonly listTagInventory?: (repository: string, opts?: { signal?: AbortSignal }) => AsyncIterable<TagInventoryEntry>;

  protected override async probeExtra(): Promise<Record<string, boolean | string>> {
    if (!this.api) return { namespaceManagement: 'no API keys: namespaces must exist', tagInventory: 'no API keys: tags are checked one by one' };
    const api = this.api;
    return {
      namespaceManagement: await probe(() => api.describeNamespace('ferry-check')),
      // DescribeRepositories (one page): what the bulk listing and inventory need.
      tagInventory: await probe(async () => {
        for await (const _ of api.listRepositories()) break;
      }),
    };
  }
}

async function* tcrInventory(api: TcrApi, repository: string, signal?: AbortSignal): AsyncIterable<TagInventoryEntry> {
  for await (const image of api.describeImages(repository)) {
    signal?.throwIfAborted();
    if (!image.ImageVersion || !image.Digest) continue;
    const entry: TagInventoryEntry = { tag: image.ImageVersion, digest: image.Digest };
    const pushedAt = tcrTime(image.UpdateTime);
    if (pushedAt) entry.pushedAt = pushedAt;
    if (typeof image.Size === 'number') entry.size = image.Size;
    yield entry;
  }
}

// Huawei Cloud / Open Telekom Cloud SWR: login key derived from AK/SK (or an explicit docker
// credential), organizations created through the SWR API (AK/SK signed) or, without AK/SK, through the
// registry host's undocumented dockyard endpoint as Harbor's Huawei adapter does. Repositories are
// exactly organization/name.
import type { RegistryConfig } from '../config/schema.js';
import type { RegistryClient } from '../registry/client.js';
import { GenericProvider, probe } from './generic.js';
import { validateSwrRepository } from './names.js';
import type { SwrApi, SwrDockyard } from './swr-api.js';

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
  }

  override validateDestination(repository: string): string | undefined {
    return validateSwrRepository(repository);
  }

  override async prepareDestination(repository: string): Promise<void> {
    await this.namespaces?.ensureNamespace(repository.split('/')[0]!);
  }

  protected override async probeExtra(): Promise<Record<string, boolean | string>> {
    if (!this.namespaces) return { namespaceManagement: 'no credentials for organization management' };
    return { namespaceManagement: await probe(() => this.namespaces!.describeNamespace('ferry-check')) };
  }
}

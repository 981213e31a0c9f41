// Builds the Provider for a configured registry: the right product adapter on top of a
// RegistryClient with that product's credentials.
import type { Logger } from 'pino';
import type { RegistryConfig, TransferConfig } from '../config/schema.js';
import type { RequestCounter, RequestObserver } from '../http/observe.js';
import type { LimitShare, RequestLimits } from '../http/limits.js';
import type { CredentialSource } from '../registry/auth.js';
import { RegistryClient } from '../registry/client.js';
import { GenericProvider } from './generic.js';
import { HarborProvider } from './harbor.js';
import { HarborApi } from './harbor-api.js';
import { SWR_DEFAULT_LIMITS, SwrProvider } from './swr.js';
import { SwrApi, SwrDockyard, swrCredentials } from './swr-api.js';
import { TcrProvider } from './tcr.js';
import { TcrApi, TcrCredentialSource } from './tcr-api.js';
import type { Provider } from './types.js';

export interface ProviderOptions {
  transfer: Pick<TransferConfig, 'retries' | 'requestTimeout' | 'concurrency'>;
  logger?: Logger | undefined;
  onRetry?: ((registry: string) => void) | undefined;
  /** Counts every request per registry and kind (shared by the run's providers: plan/report say how many each received). */
  requests?: RequestCounter | undefined;
  /** Called once per HTTP request (method, URL without query, status, duration): the CLI logs it at debug level. */
  onRequest?: RequestObserver | undefined;
  /** Cooperating workers share each registry's `limits` (issue 12): this process's part follows it. */
  limitShare?: LimitShare | undefined;
}

export function staticCredentials(config: RegistryConfig): CredentialSource {
  const creds = config.username !== undefined && config.password !== undefined ? { username: config.username, password: config.password } : undefined;
  return async () => creds;
}

export function createClient(name: string, config: RegistryConfig, opts: ProviderOptions, credentials: CredentialSource = staticCredentials(config)): RegistryClient {
  return new RegistryClient({
    name,
    url: config.url,
    credentials,
    insecure: config.insecure,
    caFile: config.caFile,
    retries: opts.transfer.retries,
    requestTimeoutMs: opts.transfer.requestTimeout * 1000,
    limits: withShare(config.limits ?? (config.kind === 'swr' ? SWR_DEFAULT_LIMITS : undefined), opts.limitShare),
    connections: Math.max(8, opts.transfer.concurrency * 2),
    logger: opts.logger,
    onRetry: () => opts.onRetry?.(name),
    counter: opts.requests,
    observer: opts.onRequest,
  });
}

function withShare(limits: RequestLimits | undefined, share: LimitShare | undefined): RequestLimits | undefined {
  return limits && share ? { ...limits, share } : limits;
}

/** Options of a cloud API's own transport: the run's request counter (counted as registry `name`) and observer. */
function apiHttp(opts: ProviderOptions, name: string) {
  return { counter: opts.requests, countAs: name, observer: opts.onRequest };
}

export function createProvider(name: string, config: RegistryConfig, opts: ProviderOptions): Provider {
  switch (config.kind) {
    case 'tcr': {
      const api = config.tcr ? TcrApi.fromConfig(config.tcr, apiHttp(opts, name)) : undefined;
      // An explicit instance credential wins; API keys then only manage namespaces.
      const credentials = config.username !== undefined || !api ? staticCredentials(config) : new TcrCredentialSource(api).source;
      return new TcrProvider(name, config, createClient(name, config, opts, credentials), api);
    }
    case 'swr': {
      const login = swrCredentials(config);
      const client = createClient(name, config, opts, async () => login);
      const namespaces =
        config.swr?.accessKey && config.swr.secretKey
          ? SwrApi.fromConfig(config.swr, apiHttp(opts, name))
          : login
            ? // The dockyard endpoint is on the registry host: the registry's transport (TLS settings, limits).
              new SwrDockyard({ registryUrl: config.url, ...login, transport: client.transport })
            : undefined;
      return new SwrProvider(name, config, client, namespaces);
    }
    case 'harbor': {
      // One transport for Harbor's API and its /v2/: one origin, one set of limits, one back-off.
      const client = createClient(name, config, opts);
      const api = new HarborApi({ url: config.url, username: config.username, password: config.password, registry: name, transport: client.transport });
      return new HarborProvider(name, config, client, api);
    }
    default:
      return new GenericProvider(name, config, createClient(name, config, opts));
  }
}

/** The state key of a destination: its name and host, so a config pointing a name elsewhere starts fresh. */
export function registryKey(name: string, config: RegistryConfig): string {
  return `${name}@${new URL(config.url).host}`;
}

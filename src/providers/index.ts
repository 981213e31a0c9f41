// Builds the Provider for a configured registry: the right product adapter on top of a
// RegistryClient with that product's credentials.
import type { Logger } from 'pino';
import type { RegistryConfig, TransferConfig } from '../config/schema.js';
import type { CredentialSource } from '../registry/auth.js';
import { RegistryClient } from '../registry/client.js';
import { trustedCertificates } from '../registry/http.js';
import { Agent, type Dispatcher } from 'undici';
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
    limits: config.limits ?? (config.kind === 'swr' ? SWR_DEFAULT_LIMITS : undefined),
    connections: Math.max(8, opts.transfer.concurrency * 2),
    logger: opts.logger,
    onRetry: () => opts.onRetry?.(name),
  });
}

/** An undici dispatcher with the registry's TLS settings, for product APIs on the registry host. */
export function tlsDispatcher(config: RegistryConfig): Dispatcher | undefined {
  if (!config.insecure && !config.caFile) return undefined;
  return new Agent({ connect: { rejectUnauthorized: !config.insecure, ...(config.caFile ? { ca: trustedCertificates(config.caFile) } : {}) } });
}

export function createProvider(name: string, config: RegistryConfig, opts: ProviderOptions): Provider {
  switch (config.kind) {
    case 'tcr': {
      const api = config.tcr ? TcrApi.fromConfig(config.tcr) : undefined;
      // An explicit instance credential wins; API keys then only manage namespaces.
      const credentials = config.username !== undefined || !api ? staticCredentials(config) : new TcrCredentialSource(api).source;
      return new TcrProvider(name, config, createClient(name, config, opts, credentials), api);
    }
    case 'swr': {
      const login = swrCredentials(config);
      const namespaces =
        config.swr?.accessKey && config.swr.secretKey
          ? SwrApi.fromConfig(config.swr)
          : login
            ? new SwrDockyard({ registryUrl: config.url, ...login, dispatcher: tlsDispatcher(config) })
            : undefined;
      return new SwrProvider(name, config, createClient(name, config, opts, async () => login), namespaces);
    }
    case 'harbor': {
      const api = new HarborApi({
        url: config.url,
        username: config.username,
        password: config.password,
        registry: name,
        dispatcher: tlsDispatcher(config),
        retries: opts.transfer.retries,
        timeoutMs: opts.transfer.requestTimeout * 1000,
      });
      return new HarborProvider(name, config, createClient(name, config, opts), api);
    }
    default:
      return new GenericProvider(name, config, createClient(name, config, opts));
  }
}

/** The state key of a destination: its name and host, so a config pointing a name elsewhere starts fresh. */
export function registryKey(name: string, config: RegistryConfig): string {
  return `${name}@${new URL(config.url).host}`;
}

// Builds the Provider for a configured registry: the right product adapter on top of a
// RegistryClient with that product's credentials.
import type { Logger } from 'pino';
import type { RegistryConfig, TransferConfig } from '../config/schema.js';
import type { CredentialSource } from '../registry/auth.js';
import { RegistryClient } from '../registry/client.js';
import { GenericProvider } from './generic.js';
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
    limits: config.limits,
    connections: Math.max(8, opts.transfer.concurrency * 2),
    logger: opts.logger,
    onRetry: () => opts.onRetry?.(name),
  });
}

export function createProvider(name: string, config: RegistryConfig, opts: ProviderOptions): Provider {
  switch (config.kind) {
    default:
      return new GenericProvider(name, config, createClient(name, config, opts));
  }
}

/** The journal key of a destination: its name and host, so a config pointing a name elsewhere starts fresh. */
export function registryKey(name: string, config: RegistryConfig): string {
  return `${name}@${new URL(config.url).host}`;
}

// Integration-test helpers: real registries (distribution 2.8), a token issuer, in-memory test
// content with an independent raw client, and fronts (fault-injecting proxy, redirecting registry, WAN link). See each module's header.
export * from './ports.js';
export * from './token-issuer.js';
export * from './registry.js';
export * from './images.js';
export * from './raw-client.js';
export * from './fault-proxy.js';
export * from './redirecting-registry.js';
export * from './wan-proxy.js';
export * from './hostile-front.js';

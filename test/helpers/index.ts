// Integration-test helpers: real registries (distribution 2.8), a token issuer, in-memory test
// content with an independent raw client, and fault-injecting proxies. See each module's header.
export * from './ports.js';
export * from './token-issuer.js';
export * from './registry.js';
export * from './images.js';
export * from './proxy.js';

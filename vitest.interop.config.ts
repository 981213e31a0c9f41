import { defineConfig } from 'vitest/config';

// `npm run test:interop` (scripts/test-interop.mjs): real clients (helm, cosign, oras, regctl, crane) and
// other registry implementations against Ferry. Kept out of `npm test`: it needs Go-built tools.
export default defineConfig({
  test: {
    include: ['test/interop/**/*.test.ts'],
    // Each test runs several client processes against real registries on a shared 2-core machine.
    testTimeout: 180_000,
    hookTimeout: 180_000,
    pool: 'forks',
    maxWorkers: 2,
  },
});

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';

const dir = join(import.meta.dirname, '..', '..', 'config');
const env = new Proxy({} as NodeJS.ProcessEnv, { get: (_t, name) => (typeof name === 'string' ? `dummy-${name.toLowerCase()}` : undefined) });

describe('example configs', () => {
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.yaml'))) {
    it(`${file} is valid`, () => {
      // The examples name files of the machine they are meant for (caFile): only the schema is checked.
      const cfg = loadConfig(join(dir, file), env, { checkFiles: false });
      expect(cfg.rules.length).toBeGreaterThan(0);
    });
  }
});

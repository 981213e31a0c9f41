// `ferry check` probes against a real registry (distribution 2.8: catalog yes, referrers API no).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { Engine } from '../../src/engine/engine.js';
import { type TestRegistry, buildImage, pushImage, startRegistry } from '../helpers/index.js';

let reg: TestRegistry;

beforeAll(async () => {
  reg = await startRegistry({ auth: 'basic' });
  await pushImage(reg, 'library/probe', '1', buildImage({ layers: [1000] }));
});
afterAll(async () => reg?.stop());

function engine(password: string): Engine {
  return new Engine(parseConfig({ registries: { r: { url: reg.url, username: 'ferry', password } } }), { stateDir: false });
}

describe('check', () => {
  it('reports reachability, authentication and features without writing anything by default', async () => {
    const e = engine('s3cret');
    try {
      const report = await e.provider('r').check();
      expect(report).toMatchObject({ registry: 'r', reachable: true, authenticated: true, features: { catalog: true, referrers: false } });
      expect(report.features.push).toBeUndefined();
    } finally {
      await e.close();
    }
  });

  it('probes push, chunked uploads and mounts in a probe repository', async () => {
    const e = engine('s3cret');
    try {
      const report = await e.provider('r').check({ probeRepository: 'ferry/probe' });
      expect(report.features).toMatchObject({ push: true, chunkedUpload: true, mount: true });
    } finally {
      await e.close();
    }
  });

  it('reports refused credentials', async () => {
    const e = engine('wrong');
    try {
      const report = await e.provider('r').check();
      expect(report.reachable).toBe(true);
      expect(report.authenticated).toBe(false);
      expect(report.error).toMatch(/HTTP 401/);
    } finally {
      await e.close();
    }
  });
});

// The Dockerfile, .dockerignore and docker-compose.test.yml, reviewed by a test since no Docker engine
// runs here: the stages, what is copied (and not ignored), the runtime contract (non-root, ferry as
// entrypoint, /config and /state, FERRY_STATE_DIR), and the compose file's registries and test run.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { REPO_ROOT } from '../cli/run.js';

const dockerfile = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
// Instructions with their continuation lines joined, comments dropped.
const instructions = dockerfile
  .replace(/\\\n/g, ' ')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));
const stages: { from: string; name?: string | undefined; lines: string[] }[] = [];
for (const line of instructions) {
  const from = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i.exec(line);
  if (from) stages.push({ from: from[1]!, name: from[2], lines: [] });
  else stages.at(-1)?.lines.push(line);
}
const ignored = readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));

describe('Dockerfile', () => {
  it('is multi-stage on node slim images: npm ci + build first, production dependencies only in the image', () => {
    expect(/^ARG NODE_VERSION=(22|24)$/m.test(dockerfile)).toBe(true);
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const s of stages) expect(s.from).toBe('node:${NODE_VERSION}-slim');
    const build = stages[0]!;
    expect(build.lines.some((l) => /^RUN npm ci\b/.test(l))).toBe(true);
    expect(build.lines).toContain('RUN npm run build');
    const deps = stages.find((s) => s.lines.some((l) => /npm ci .*--omit=dev/.test(l)));
    expect(deps).toBeDefined();
    const final = stages.at(-1)!;
    expect(final.lines.some((l) => /^COPY --from=build \S+\/dist /.test(l))).toBe(true);
    expect(final.lines.some((l) => new RegExp(`^COPY --from=${deps!.name} \\S+/node_modules `).test(l))).toBe(true);
    expect(final.lines.some((l) => /npm ci(?!.*--omit=dev)/.test(l))).toBe(false);
  });

  it('runs ferry as a non-root user with /config and /state as volumes and FERRY_STATE_DIR=/state', () => {
    const final = stages.at(-1)!.lines;
    expect(final).toContain('USER 10001:10001');
    expect(final).toContain('ENTRYPOINT ["ferry"]');
    expect(final).toContain('VOLUME ["/config", "/state"]');
    expect(final.some((l) => /^ENV .*FERRY_STATE_DIR=\/state/.test(l))).toBe(true);
    expect(final.some((l) => /ln -s \/opt\/ferry\/bin\/ferry\.js \/usr\/local\/bin\/ferry/.test(l))).toBe(true);
    expect(final).toContain('EXPOSE 8480');
    // The launcher loads what the build stage compiles.
    expect(readFileSync(join(REPO_ROOT, 'bin/ferry.js'), 'utf8')).toContain("from '../dist/cli/main.js'");
    const build = JSON.parse(readFileSync(join(REPO_ROOT, 'tsconfig.build.json'), 'utf8'));
    expect(build.compilerOptions.outDir).toBe('dist');
  });

  it('copies only files that exist and that .dockerignore lets through', () => {
    const copied = instructions
      .filter((l) => /^COPY /.test(l) && !/--from=/.test(l))
      .flatMap((l) => l.replace(/^COPY\s+/, '').split(/\s+/).slice(0, -1));
    expect(copied.length).toBeGreaterThan(4);
    for (const src of copied) {
      expect(existsSync(join(REPO_ROOT, src)), src).toBe(true);
      expect(ignored, src).not.toContain(src);
    }
    for (const must of ['node_modules', 'dist', '.git']) expect(ignored).toContain(must);
  });
});

describe('docker-compose.test.yml', () => {
  const compose = parse(readFileSync(join(REPO_ROOT, 'docker-compose.test.yml'), 'utf8')) as {
    services: Record<string, { image: string; environment?: Record<string, string>; configs?: { source: string; target: string }[]; command?: string[]; volumes?: string[]; depends_on?: Record<string, unknown> }>;
    configs: Record<string, { content: string }>;
  };

  it('starts two registry:2 containers, one with htpasswd auth (ferry / s3cret)', () => {
    const registries = Object.entries(compose.services).filter(([, s]) => s.image === 'registry:2');
    expect(registries.map(([n]) => n).sort()).toEqual(['registry', 'registry-auth']);
    const auth = compose.services['registry-auth']!;
    expect(auth.environment).toMatchObject({ REGISTRY_AUTH: 'htpasswd', REGISTRY_AUTH_HTPASSWD_PATH: '/auth/htpasswd' });
    expect(auth.configs).toEqual([{ source: 'htpasswd', target: '/auth/htpasswd' }]);
    // Compose turns $$ into $: the file as the registry sees it.
    const line = compose.configs.htpasswd!.content.trim().replace(/\$\$/g, '$');
    const [user, hash] = line.split(':') as [string, string];
    expect(user).toBe('ferry');
    expect(bcrypt.compareSync('s3cret', hash)).toBe(true);
  });

  it('runs the integration, CLI and API tests against them with FERRY_TEST_DOCKER=1', () => {
    const it = compose.services.integration!;
    expect(it.environment).toMatchObject({
      FERRY_TEST_DOCKER: '1',
      FERRY_TEST_REGISTRY_URL: 'http://registry:5000',
      FERRY_TEST_REGISTRY_AUTH_URL: 'http://registry-auth:5000',
      FERRY_TEST_REGISTRY_USERNAME: 'ferry',
      FERRY_TEST_REGISTRY_PASSWORD: 's3cret',
    });
    expect(Object.keys(it.depends_on ?? {}).sort()).toEqual(['registry', 'registry-auth']);
    expect(it.volumes).toContain('/var/run/docker.sock:/var/run/docker.sock');
    // The shared temp dir that makes the testcontainers bind mounts valid on the Docker host.
    expect(it.volumes).toContain(`${it.environment!.TMPDIR}:${it.environment!.TMPDIR}`);
    const script = it.command!.join(' ');
    const paths = /vitest run (.*)$/.exec(script)![1]!.split(/\s+/);
    for (const p of paths) expect(existsSync(join(REPO_ROOT, p)), p).toBe(true);
    expect(existsSync(join(REPO_ROOT, 'test/integration/compose.test.ts'))).toBe(true);
  });
});

// Harbor payload parsing and rule matching (pure functions); the end-to-end path is in e2e.test.ts.
import { describe, expect, it } from 'vitest';
import { WebhookError, deletedArtifacts, matchRules, parseHarborEvent, pushedArtifacts, resourceHost } from '../../src/daemon/webhook.js';
import { parseConfig } from '../../src/config/load.js';
import { harborPush } from './fakes.js';

const digest = `sha256:${'a'.repeat(64)}`;

const config = parseConfig({
  registries: {
    harbor: { url: 'https://harbor.example.com' },
    harbor2: { url: 'http://10.0.0.5:8080' },
    tcr: { url: 'https://x.tencentcloudcr.com' },
  },
  rules: [
    { name: 'push', source: 'harbor', destination: 'tcr', trigger: 'event' },
    { name: 'push-off', source: 'harbor', destination: 'tcr', trigger: 'event', enabled: false },
    { name: 'nightly', source: 'harbor', destination: 'tcr', trigger: { schedule: '0 2 * * *' } },
    { name: 'other-harbor', source: 'harbor2', destination: 'tcr', trigger: 'event' },
  ],
});

describe('Harbor webhook payloads', () => {
  it('parses PUSH_ARTIFACT into the pushed artifact', () => {
    const e = parseHarborEvent(harborPush('library/nginx', 'v1', digest, 'harbor.example.com'));
    expect(e).toMatchObject({ type: 'PUSH_ARTIFACT', handled: true, repository: 'library/nginx', project: 'library', operator: 'admin', occurAt: 1700000000 });
    expect(e.resources).toEqual([{ digest, tag: 'v1', host: 'harbor.example.com' }]);
    expect(pushedArtifacts(e)).toEqual([{ repository: 'library/nginx', digest, tags: ['v1'] }]);
  });

  it('treats a digest in "tag" as an untagged artifact', () => {
    const e = parseHarborEvent(harborPush('a/b/c', undefined, digest, 'harbor.example.com:8443'));
    expect(e.resources[0]!.host).toBe('harbor.example.com:8443');
    expect(pushedArtifacts(e)).toEqual([{ repository: 'a/b/c', digest, tags: [] }]);
  });

  it('parses the CloudEvents format', () => {
    const e = parseHarborEvent({
      specversion: '1.0',
      id: '66e18103-09c1-41f6-982f-37df223f3eeb',
      source: '/projects/2/webhook/policies/15',
      type: 'harbor.artifact.deleted',
      datacontenttype: 'application/json',
      time: '2023-04-03T06:04:46Z',
      operator: 'robot$ci',
      data: { resources: [{ digest, tag: 'stable', resource_url: 'harbor.example.com/team/app:stable' }], repository: { name: 'app', namespace: 'team', repo_full_name: 'team/app', repo_type: 'private' } },
    });
    expect(e).toMatchObject({ type: 'DELETE_ARTIFACT', repository: 'team/app', operator: 'robot$ci', occurAt: 1680501886 });
    expect(deletedArtifacts(e)).toEqual([{ repository: 'team/app', digest, tag: 'stable' }]);
  });

  it('parses ChartMuseum chart events of older Harbor (resource_url with scheme, no digest)', () => {
    const body = {
      type: 'UPLOAD_CHART',
      occur_at: 1600000000,
      operator: 'admin',
      event_data: {
        resources: [{ tag: '1.2.3+build.1', resource_url: 'https://harbor.example.com/chartrepo/charts/charts/demo-1.2.3+build.1.tgz' }],
        repository: { name: 'demo', namespace: 'charts', repo_full_name: 'charts/demo', repo_type: 'private' },
      },
    };
    const e = parseHarborEvent(body);
    expect(e.resources[0]!.host).toBe('harbor.example.com');
    expect(pushedArtifacts(e)).toEqual([{ repository: 'charts/demo', tags: ['1.2.3_build.1'], kind: 'chart', chartMuseum: { project: 'charts', name: 'demo', version: '1.2.3+build.1' } }]);
    expect(deletedArtifacts(parseHarborEvent({ ...body, type: 'DELETE_CHART' }))).toEqual([{ repository: 'charts/demo', digest: undefined, tag: '1.2.3_build.1', chart: true }]);
  });

  it('ignores event types it does not act on without validating them further', () => {
    expect(parseHarborEvent({ type: 'SCANNING_COMPLETED', event_data: {} })).toMatchObject({ handled: false, type: 'SCANNING_COMPLETED' });
  });

  it.each([
    ['not an object', [1, 2]],
    ['no type', { event_data: {} }],
    ['no event_data', { type: 'PUSH_ARTIFACT' }],
    ['no repository', { type: 'PUSH_ARTIFACT', event_data: { resources: [{ tag: 'v1' }] } }],
    ['no resources', { type: 'PUSH_ARTIFACT', event_data: { repository: { repo_full_name: 'a/b' }, resources: [] } }],
    ['bad repository', { type: 'PUSH_ARTIFACT', event_data: { repository: { repo_full_name: '../etc' }, resources: [{ tag: 'v1' }] } }],
    ['bad tag', { type: 'PUSH_ARTIFACT', event_data: { repository: { repo_full_name: 'a/b' }, resources: [{ tag: 'v1/../x' }] } }],
    ['bad digest', { type: 'PUSH_ARTIFACT', event_data: { repository: { repo_full_name: 'a/b' }, resources: [{ digest: 'nope' }] } }],
    ['neither tag nor digest', { type: 'PUSH_ARTIFACT', event_data: { repository: { repo_full_name: 'a/b' }, resources: [{ resource_url: 'h/a/b' }] } }],
    ['wrong types', { type: 'PUSH_ARTIFACT', event_data: { repository: { repo_full_name: 42 }, resources: [{ tag: 'v1' }] } }],
  ])('rejects a malformed payload: %s', (_what, body) => {
    expect(() => parseHarborEvent(body)).toThrow(WebhookError);
  });

  it('reads the host of resource URLs with and without scheme', () => {
    expect(resourceHost('harbor.example.com/library/nginx:latest')).toBe('harbor.example.com');
    expect(resourceHost('HARBOR.example.com:8443/a/b@sha256:00')).toBe('harbor.example.com:8443');
    expect(resourceHost('https://harbor.example.com/chartrepo/p/charts/x-1.tgz')).toBe('harbor.example.com');
  });
});

describe('matching rules to events', () => {
  const names = (body: unknown) => matchRules(config, parseHarborEvent(body)).map((r) => r.name);

  it('picks enabled event rules whose source is the Harbor that sent the event', () => {
    expect(names(harborPush('library/nginx', 'v1', digest, 'harbor.example.com'))).toEqual(['push']);
    expect(names(harborPush('library/nginx', 'v1', digest, 'harbor.example.com:443'))).toEqual(['push']);
    expect(names(harborPush('library/nginx', 'v1', digest, '10.0.0.5:8080'))).toEqual(['other-harbor']);
    expect(names(harborPush('library/nginx', 'v1', digest, 'unknown.example.com'))).toEqual([]);
  });

  it('considers every enabled event rule when the host is unknown', () => {
    const body = harborPush('library/nginx', 'v1', digest, 'x');
    delete (body.event_data.resources[0] as { resource_url?: string }).resource_url;
    expect(names(body)).toEqual(['push', 'other-harbor']);
  });
});

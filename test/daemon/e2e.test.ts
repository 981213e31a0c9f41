// The daemon against real registries (Debian docker-registry): a Harbor push webhook copies exactly the
// pushed artifact to the destination within seconds; a delete webhook removes what Ferry put there
// and nothing else; 401/400 for bad requests; metrics after real transfers; history across a restart.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { FerryConfig } from '../../src/config/schema.js';
import { Daemon } from '../../src/daemon/service.js';
import { type TestImage, type TestRegistry, buildImage, deleteManifest, getManifest, listTags, pushImage, randomBlob, startRegistry } from '../helpers/index.js';
import { eventually, harborPush, http, tempStateDir } from './fakes.js';

const WEBHOOK_AUTH = 'Basic aGFyYm9yOndlYmhvb2stc2VjcmV0';
let source: TestRegistry;
let destination: TestRegistry;
let daemon: Daemon;
let url: string;
const stateDir = tempStateDir();
const images: Record<string, TestImage> = {};

function config(): FerryConfig {
  return parseConfig({
    registries: {
      harbor: { url: source.url },
      elsewhere: { url: 'http://127.0.0.1:9' },
      dst: { url: destination.url, username: 'ferry', password: 's3cret' },
    },
    transfer: { stateDir, concurrency: 4, retries: 1, gracePeriod: 2 },
    daemon: { listen: '127.0.0.1:0', webhookAuth: WEBHOOK_AUTH },
    rules: [
      { name: 'on-push', source: 'harbor', destination: 'dst', destinationNamespace: 'mirror', filters: { repositories: ['library/**'] }, trigger: 'event', deleteRemote: true },
      { name: 'keep', source: 'harbor', destination: 'dst', destinationNamespace: 'kept', filters: { repositories: ['library/**'] }, trigger: 'event' },
      { name: 'other-harbor', source: 'elsewhere', destination: 'dst', trigger: 'event' },
      { name: 'full', source: 'harbor', destination: 'dst', destinationNamespace: 'full' },
    ],
  });
}

const post = (body: unknown, authorization: string | null = WEBHOOK_AUTH) =>
  http(url, 'POST', '/webhooks/harbor', { body: typeof body === 'string' ? body : (body as object), headers: authorization ? { authorization } : {} });

beforeAll(async () => {
  [source, destination] = await Promise.all([startRegistry({ auth: 'none' }), startRegistry({ auth: 'basic' })]);
  const shared = randomBlob(64_000);
  images.v1 = buildImage({ layers: [shared, randomBlob(40_000)] });
  images.v2 = buildImage({ layers: [shared, randomBlob(30_000)] });
  images.team = buildImage({ layers: [randomBlob(10_000)] });
  await pushImage(source, 'library/app', '1.0', images.v1);
  await pushImage(source, 'library/app', '2.0', images.v2);
  await pushImage(source, 'team/tool', '1', images.team);
  daemon = new Daemon({ config: config() });
  await daemon.start();
  url = daemon.url;
}, 60_000);

afterAll(async () => {
  await daemon?.stop(0);
  await Promise.all([source?.stop(), destination?.stop()]);
});

describe('Harbor webhooks end to end', () => {
  it('copies only the pushed artifact, through the matching rules, within seconds', async () => {
    const started = Date.now();
    const res = await post(harborPush('library/app', '1.0', images.v1!.digest, source.host));
    expect(res.status).toBe(202);
    const body = res.json();
    expect(body).toMatchObject({ accepted: true, event: 'PUSH_ARTIFACT', repository: 'library/app' });
    // The rule whose source is another registry is not involved.
    expect(body.executions.map((e: { rule: string }) => e.rule).sort()).toEqual(['keep', 'on-push']);

    const copied = await eventually(() => getManifest(destination, 'mirror/library/app', '1.0'), 10_000, 'mirror/library/app:1.0 at the destination');
    expect(copied.digest).toBe(images.v1!.digest);
    expect(Date.now() - started).toBeLessThan(10_000);
    await eventually(() => getManifest(destination, 'kept/library/app', '1.0'));
    // Only the pushed tag: 2.0 exists at the source but was not in the event.
    expect(await listTags(destination, 'mirror/library/app')).toEqual(['1.0']);

    const id = body.executions.find((e: { rule: string }) => e.rule === 'on-push').id;
    const exec = await eventually(async () => {
      const e = (await http(url, 'GET', `/api/executions/${id}`)).json();
      return e.status !== 'running' && e;
    });
    expect(exec).toMatchObject({ rule: 'on-push', status: 'ok', trigger: 'event', artifacts: { copied: 1, failed: 0 } });
    expect(exec.triggers[0]).toMatchObject({ type: 'event', event: 'PUSH_ARTIFACT', operator: 'admin', repository: 'library/app' });
    // The two rules copy the same blobs into one registry at once: one uploads, the other mounts.
    const keepId = body.executions.find((e: { rule: string }) => e.rule === 'keep').id;
    const keep = await eventually(async () => {
      const e = (await http(url, 'GET', `/api/executions/${keepId}`)).json();
      return e.status !== 'running' && e;
    });
    expect(exec.bytes + keep.bytes).toBeGreaterThan(100_000);
    expect(exec.blobs.uploaded + keep.blobs.uploaded).toBe(3);
    expect(exec.blobs.mounted + keep.blobs.mounted).toBe(3);
    expect(exec.items).toEqual([expect.objectContaining({ status: 'copied', digest: images.v1!.digest, tags: ['1.0'] })]);
  });

  it("applies the rules' repository filters to pushed artifacts", async () => {
    const res = await post(harborPush('team/tool', '1', images.team!.digest, source.host));
    expect(res.status).toBe(200);
    expect(res.json()).toEqual({ accepted: false, reason: "no event-triggered rule's repository filters select team/tool", executions: [] });
    expect(await getManifest(destination, 'mirror/team/tool', '1')).toBeNull();
  });

  it('refuses unauthenticated (401) and malformed (400) requests and keeps running', async () => {
    const payload = harborPush('library/app', '2.0', images.v2!.digest, source.host);
    expect((await post(payload, null)).status).toBe(401);
    expect((await post(payload, 'Basic d3Jvbmc=')).status).toBe(401);
    expect((await post(payload, `${WEBHOOK_AUTH}x`)).status).toBe(401);
    expect((await post(payload, WEBHOOK_AUTH.toLowerCase())).status).toBe(401);
    const notJson = await post('{"type": "PUSH_ARTIFACT", ');
    expect(notJson.status).toBe(400);
    const noResources = await post({ type: 'PUSH_ARTIFACT', event_data: { repository: { repo_full_name: 'library/app' } } });
    expect(noResources.status).toBe(400);
    expect(noResources.json().error).toMatch(/resources/);
    const big = await post(JSON.stringify({ type: 'PUSH_ARTIFACT', pad: 'x'.repeat(1_100_000) }));
    expect(big.status).toBe(413);
    // Other event types are acknowledged and ignored; an unknown Harbor matches no rule.
    expect((await post({ type: 'PULL_ARTIFACT', event_data: {} })).json()).toMatchObject({ accepted: false });
    const stranger = await post(harborPush('library/app', '2.0', images.v2!.digest, 'harbor.unknown.example'));
    expect(stranger.status).toBe(200);
    expect(stranger.json()).toMatchObject({ accepted: false, executions: [] });
    expect((await http(url, 'GET', '/healthz')).status).toBe(200);
    expect(await listTags(destination, 'mirror/library/app')).toEqual(['1.0']);
  });

  it('deletes at the destination only for deleteRemote rules, and only what Ferry pushed', async () => {
    // Someone else pushed library/other:1 straight to the destination (Ferry did not put it there).
    const foreign = buildImage({ layers: [randomBlob(5_000)] });
    await pushImage(source, 'library/other', '1', foreign);
    await pushImage(destination, 'mirror/library/other', '1', foreign);

    const del = (repo: string, tag: string, digest: string) => {
      const p = harborPush(repo, tag, digest, source.host);
      return post({ ...p, type: 'DELETE_ARTIFACT' });
    };
    const finished = async (id: number) =>
      eventually(async () => {
        const e = (await http(url, 'GET', `/api/executions/${id}`)).json();
        return e.status !== 'running' && e.status !== 'queued' && e;
      });
    // A delete event while the source still serves the digest (late, replayed, or re-pushed since): kept.
    const early = await del('library/app', '1.0', images.v1!.digest);
    expect(early.status).toBe(202);
    const kept = await finished(early.json().executions[0].id);
    expect(kept.deletions).toEqual([expect.objectContaining({ status: 'kept', reason: expect.stringMatching(/the source still has library\/app@sha256:.* not deleting a live replica/) })]);
    expect((await getManifest(destination, 'mirror/library/app', '1.0'))?.digest).toBe(images.v1!.digest);

    // Deleted at the source (it answers 404 for the digest): deleted at the destination.
    expect(await deleteManifest(source, 'library/app', images.v1!.digest)).toBe(true);
    const res = await del('library/app', '1.0', images.v1!.digest);
    expect(res.status).toBe(202);
    expect(res.json().executions.map((e: { rule: string }) => e.rule)).toEqual(['on-push']);
    await eventually(async () => (await getManifest(destination, 'mirror/library/app', '1.0')) === null, 10_000, 'deletion at the destination');
    // The rule without deleteRemote keeps its copy.
    expect((await getManifest(destination, 'kept/library/app', '1.0'))?.digest).toBe(images.v1!.digest);
    const exec = await eventually(async () => {
      const e = (await http(url, 'GET', `/api/executions/${res.json().executions[0].id}`)).json();
      return e.status !== 'running' && e;
    });
    expect(exec.status).toBe('ok');
    expect(exec.deletions).toEqual([expect.objectContaining({ status: 'deleted', digest: images.v1!.digest, destination: 'dst/mirror/library/app:1.0' })]);

    expect(await deleteManifest(source, 'library/other', foreign.digest)).toBe(true);
    const foreignDel = await del('library/other', '1', foreign.digest);
    const exec2 = await eventually(async () => {
      const e = (await http(url, 'GET', `/api/executions/${foreignDel.json().executions[0].id}`)).json();
      return e.status !== 'running' && e;
    });
    expect(exec2.deletions).toEqual([expect.objectContaining({ status: 'kept', reason: expect.stringMatching(/no record of pushing it/) })]);
    expect((await getManifest(destination, 'mirror/library/other', '1'))?.digest).toBe(foreign.digest);
    // Back at the source for the tests that follow.
    await pushImage(source, 'library/app', '1.0', images.v1!);
    await pushImage(source, 'library/other', '1', foreign);
  });

  it('exports metrics of the real transfers', async () => {
    const res = await http(url, 'GET', '/metrics');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0.0.4/);
    const text = res.text;
    const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
    expect(value(/^ferry_artifacts_total\{rule="on-push",status="copied"\} (\d+)$/m)).toBe(1);
    expect(value(/^ferry_artifacts_total\{rule="full",status="copied"\} (\d+)$/m)).toBe(0);
    const sum = (metric: string, labels: string) => ['on-push', 'keep'].reduce((n, rule) => n + value(new RegExp(`^${metric}\\{rule="${rule}"${labels}\\} (\\d+)$`, 'm')), 0);
    expect(sum('ferry_transferred_bytes_total', '')).toBeGreaterThan(100_000);
    // library/app:1.0 is three blobs; each rule copied them once (one uploaded, the other mounted).
    expect(sum('ferry_blobs_total', ',outcome="uploaded"')).toBe(3);
    expect(sum('ferry_blobs_total', ',outcome="mounted"')).toBe(3);
    expect(text).toMatch(/^ferry_run_duration_seconds_bucket\{le="\+Inf",rule="on-push",status="ok"\} [1-9]/m);
    expect(text).toMatch(/^ferry_runs_total\{rule="on-push",status="ok"\} [1-9]/m);
    expect(text).toMatch(/^ferry_transfers_in_flight 0$/m);
    expect(text).toMatch(/^ferry_bandwidth_limit_bytes_per_second 0$/m);
    expect(text).toMatch(/^ferry_retries_total/m);
    expect(text).toMatch(/^ferry_webhook_events_total\{type="PUSH_ARTIFACT",outcome="accepted"\} [1-9]/m);
    expect(text).toMatch(/^ferry_webhook_events_total\{type="unknown",outcome="unauthorized"\} 4$/m);
    expect(text).toMatch(/^ferry_webhook_events_total\{type="unknown",outcome="malformed"\} [1-9]/m);
    expect(text).toMatch(/^ferry_remote_deletions_total\{rule="on-push",status="deleted"\} 1$/m);
    expect(value(/^ferry_last_success_timestamp_seconds\{rule="on-push"\} (\d+)$/m)).toBeGreaterThan(1.7e9);
  });

  it('reports readiness: every registry the enabled rules use must answer', async () => {
    const res = await http(url, 'GET', '/readyz');
    expect(res.status).toBe(503);
    expect(res.json().registries).toMatchObject({ harbor: 'ok', dst: 'ok', elsewhere: expect.stringMatching(/.+/) });
    expect(res.json().registries.elsewhere).not.toBe('ok');
  });

  it('keeps the history across a restart', async () => {
    const manual = await http(url, 'POST', '/api/rules/full/run');
    const fullId = manual.json().execution.id;
    await eventually(async () => (await http(url, 'GET', `/api/executions/${fullId}`)).json().status === 'ok', 15_000);
    const before = (await http(url, 'GET', '/api/executions?limit=1000')).json();
    await daemon.stop(0);

    daemon = new Daemon({ config: config() });
    await daemon.start();
    url = daemon.url;
    const after = (await http(url, 'GET', '/api/executions?limit=1000')).json();
    expect(after.total).toBe(before.total);
    expect(after.executions.map((e: { id: number; status: string }) => [e.id, e.status])).toEqual(before.executions.map((e: { id: number; status: string }) => [e.id, e.status]));
    const full = (await http(url, 'GET', `/api/executions/${fullId}`)).json();
    expect(full.artifacts.copied).toBe(4); // library/app 1.0 and 2.0, team/tool 1, library/other 1
    expect(full.items).toHaveLength(4);
    // New executions continue the numbering.
    const next = (await http(url, 'POST', '/api/rules/full/run')).json().execution.id;
    expect(next).toBeGreaterThan(Math.max(...before.executions.map((e: { id: number }) => e.id)));
    await eventually(async () => (await http(url, 'GET', `/api/executions/${next}`)).json().status === 'ok', 15_000);
    expect((await http(url, 'GET', `/api/executions/${next}`)).json().artifacts).toMatchObject({ copied: 0, present: 4 });
  });
});

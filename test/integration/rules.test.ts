// Harbor-rule behaviour against real registries: filters, override, deleteRemote, dry runs.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { Engine } from '../../src/engine/engine.js';
import { type TestRegistry, buildImage, deleteManifest, getManifest, listTags, pushImage, randomBlob, startRegistry } from '../helpers/index.js';

let source: TestRegistry;
let destination: TestRegistry;

beforeAll(async () => {
  [source, destination] = await Promise.all([startRegistry({ auth: 'none' }), startRegistry({ auth: 'basic' })]);
});
afterAll(async () => Promise.all([source?.stop(), destination?.stop()]));

function engine(rule: Record<string, unknown>, stateDir: string | false = false): Engine {
  return new Engine(
    parseConfig({
      registries: { s: { url: source.url }, d: { url: destination.url, username: 'ferry', password: 's3cret' } },
      rules: [{ name: 'r', source: 's', destination: 'd', ...rule }],
    }),
    { stateDir },
  );
}

async function run(rule: Record<string, unknown>, stateDir: string | false = false, dryRun = false) {
  const e = engine(rule, stateDir);
  try {
    return (await e.sync({ dryRun })).rules[0]!;
  } finally {
    await e.close();
  }
}

describe('filters against a real registry', () => {
  it('copies only matching repositories and tags', async () => {
    const img = buildImage({ layers: [randomBlob(1000)] });
    for (const tag of ['v1.0.0', 'v1.1.0', 'latest', 'v2.0.0-rc1']) await pushImage(source, 'f/app', tag, img);
    await pushImage(source, 'f/other', 'v1.0.0', img);
    const report = await run({ destinationNamespace: 'filtered', filters: { repositories: ['f/app'], tags: ['v*'], excludeTags: ['*-rc*'] } });
    expect(report.artifacts.copied + report.artifacts.present).toBe(2);
    expect((await listTags(destination, 'filtered/f/app')).sort()).toEqual(['v1.0.0', 'v1.1.0']);
    expect(await listTags(destination, 'filtered/f/other')).toEqual([]);
  });
});

describe('override', () => {
  it('re-points a differing tag with override: true and leaves it alone with override: false', async () => {
    const a = buildImage({ layers: [randomBlob(1500)] });
    const b = buildImage({ layers: [randomBlob(1500)] });
    await pushImage(source, 'o/app', '1', a);
    await pushImage(destination, 'ov/o/app', '1', b);

    const kept = await run({ destinationNamespace: 'ov', override: false });
    const item = kept.items.find((i) => i.source.includes('o/app'))!;
    expect(item.status).toBe('skipped');
    expect(item.reason).toMatch(/override: false/);
    expect((await getManifest(destination, 'ov/o/app', '1'))!.digest).toBe(b.digest);

    const replaced = await run({ destinationNamespace: 'ov', override: true, filters: { repositories: ['o/**'] } });
    expect(replaced.items.find((i) => i.source.includes('o/app'))!.status).toBe('copied');
    expect((await getManifest(destination, 'ov/o/app', '1'))!.digest).toBe(a.digest);
  });
});

describe('deleteRemote', () => {
  it('deletes destination tags that the rule pushed and that are gone from the source, nothing else', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'ferry-del-'));
    const one = buildImage({ layers: [randomBlob(1200)] });
    const two = buildImage({ layers: [randomBlob(1200)] });
    await pushImage(source, 'del/app', '1', one);
    await pushImage(source, 'del/app', '2', two);
    // Not put there by the rule: must survive.
    await pushImage(destination, 'mirror/del/app', 'manual', buildImage({ layers: [randomBlob(900)] }));
    const rule = { destinationNamespace: 'mirror', deleteRemote: true, filters: { repositories: ['del/**'] } };
    await run(rule, stateDir);
    expect((await listTags(destination, 'mirror/del/app')).sort()).toEqual(['1', '2', 'manual']);

    await deleteManifest(source, 'del/app', two.digest);
    // As `ferry sync --dry-run` runs it: the rule state is read from transfer.stateDir, nothing written.
    const dry = new Engine(
      parseConfig({
        registries: { s: { url: source.url }, d: { url: destination.url, username: 'ferry', password: 's3cret' } },
        transfer: { stateDir },
        rules: [{ name: 'r', source: 's', destination: 'd', ...rule }],
      }),
      { stateDir: false, readStateOnly: true },
    );
    const plan = await dry.sync({ dryRun: true }).then((r) => r.rules[0]!).finally(() => dry.close());
    expect(plan.plan!.filter((p) => p.action === 'delete').map((p) => p.destination)).toEqual(['d/mirror/del/app:2']);
    expect((await listTags(destination, 'mirror/del/app')).sort()).toEqual(['1', '2', 'manual']); // dry run wrote nothing

    const report = await run(rule, stateDir);
    expect(report.deleted).toEqual([{ repository: 'mirror/del/app', tag: '2' }]);
    expect((await listTags(destination, 'mirror/del/app')).sort()).toEqual(['1', 'manual']);
  });

  it('deletes the tags of a repository gone from the source, never those of a repository the filters leave out', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'ferry-vanish-'));
    const images = Object.fromEntries(['gone', 'stay', 'out'].map((r) => [r, [buildImage({ layers: [randomBlob(700)] }), buildImage({ layers: [randomBlob(700)] })]]));
    for (const [repo, [a, b]] of Object.entries(images)) {
      await pushImage(source, `van/${repo}`, '1', a!);
      await pushImage(source, `van/${repo}`, '2', b!);
    }
    const all = { destinationNamespace: 'vm', deleteRemote: true, filters: { repositories: ['van/**'] } };
    expect((await run(all, stateDir)).artifacts.copied).toBe(6);
    // van/gone loses every tag (the listing no longer returns it); van/out too, but the next run's
    // filters leave it out: out of scope is never judged gone.
    for (const repo of ['gone', 'out']) for (const img of images[repo]!) await deleteManifest(source, `van/${repo}`, img.digest);
    const report = await run({ ...all, filters: { repositories: ['van/gone', 'van/stay'] } }, stateDir);
    expect(report.deleted.sort((a, b) => a.tag.localeCompare(b.tag))).toEqual([
      { repository: 'vm/van/gone', tag: '1' },
      { repository: 'vm/van/gone', tag: '2' },
    ]);
    expect(await listTags(destination, 'vm/van/gone')).toEqual([]);
    expect((await listTags(destination, 'vm/van/stay')).sort()).toEqual(['1', '2']);
    expect((await listTags(destination, 'vm/van/out')).sort()).toEqual(['1', '2']);
    // Decided deletions leave the rule state: a third run has nothing to delete.
    expect((await run({ ...all, filters: { repositories: ['van/gone', 'van/stay'] } }, stateDir)).deleted).toEqual([]);
  });

  it('keeps destination tags when deleteRemote is off', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'ferry-nodel-'));
    const img = buildImage({ layers: [randomBlob(1100)] });
    await pushImage(source, 'keep/app', '1', img);
    await run({ destinationNamespace: 'kept', filters: { repositories: ['keep/**'] } }, stateDir);
    await deleteManifest(source, 'keep/app', img.digest);
    const report = await run({ destinationNamespace: 'kept', filters: { repositories: ['keep/**'] } }, stateDir);
    expect(report.deleted).toEqual([]);
    expect(await listTags(destination, 'kept/keep/app')).toEqual(['1']);
  });
});

describe('dry run', () => {
  it('says per artifact what a sync would do, with blob counts and bytes, and writes nothing', async () => {
    const base = randomBlob(4000);
    const same = buildImage({ layers: [base] });
    const fresh = buildImage({ layers: [base, randomBlob(3000)] });
    const changed = buildImage({ layers: [randomBlob(2000)] });
    await pushImage(source, 'dry/app', 'same', same);
    await pushImage(source, 'dry/app', 'fresh', fresh);
    await pushImage(source, 'dry/app', 'changed', changed);
    await pushImage(destination, 'plan/dry/app', 'same', same);
    await pushImage(destination, 'plan/dry/app', 'changed', buildImage({ layers: [randomBlob(500)] }));
    const rule = { destinationNamespace: 'plan', filters: { repositories: ['dry/**'] } };
    const report = await run(rule, false, true);
    const byTag = Object.fromEntries(report.plan!.map((p) => [p.tags[0], p]));
    expect(byTag.same).toMatchObject({ action: 'present', blobs: 0 });
    // The base layer is already there: only the new layer and the config would move.
    expect(byTag.fresh).toMatchObject({ action: 'copy', blobs: 2, bytes: 3000 + fresh.config.bytes.length });
    expect(byTag.changed).toMatchObject({ action: 'override', blobs: 2 });
    expect(report.planTotals!.blobs).toBe(4);
    expect((await run({ ...rule, override: false }, false, true)).plan!.find((p) => p.tags[0] === 'changed')!.action).toBe('skip');
    expect(await getManifest(destination, 'plan/dry/app', 'fresh')).toBeNull();
  });
});

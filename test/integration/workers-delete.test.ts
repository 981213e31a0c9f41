// deleteRemote when workers share a run (issue 12): each unit hands its repository's candidates to the
// database, and exactly one worker (the finisher) deletes, once every unit is done: tags gone from a
// listed repository, and every tag of a repository gone from the source; never a repository the
// filters leave out. Two engines, each with a state of its own on one PostgreSQL (two workers).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { Engine } from '../../src/engine/engine.js';
import type { RuleReport } from '../../src/engine/report.js';
import { type TestRegistry, buildImage, deleteManifest, listTags, pushImage, randomBlob, startRegistry } from '../helpers/index.js';
import { type TestPostgres, postgresAvailable, startPostgres } from '../helpers/postgres.js';

let source: TestRegistry;
let destination: TestRegistry;
let db: TestPostgres;

beforeAll(async () => {
  [source, destination, db] = await Promise.all([startRegistry({ auth: 'none' }), startRegistry({ auth: 'none' }), startPostgres()]);
}, 60_000);

afterAll(async () => {
  await Promise.all([source?.stop(), destination?.stop(), db?.stop()]);
});

async function workers(url: string, repositories: string[]): Promise<RuleReport[]> {
  const config = parseConfig({
    registries: { s: { url: source.url }, d: { url: destination.url } },
    state: { url, leaseTimeout: 3 },
    rules: [{ name: 'r', source: 's', destination: 'd', destinationNamespace: 'vm', deleteRemote: true, filters: { repositories } }],
  });
  const engines = [new Engine(config), new Engine(config)];
  try {
    return (await Promise.all(engines.map((e) => e.sync()))).map((r) => r.rules[0]!);
  } finally {
    await Promise.all(engines.map((e) => e.close()));
  }
}

describe.runIf(postgresAvailable())('deleteRemote with cooperating workers', () => {
  it('one worker deletes, once, what is gone from the source; out-of-scope repositories keep their tags', async () => {
    const url = await db.createDatabase('deletes');
    const repos = ['gone', 'stay', 'out', 'a', 'b', 'c'];
    const images = Object.fromEntries(repos.map((r) => [r, [buildImage({ layers: [randomBlob(700)] }), buildImage({ layers: [randomBlob(700)] })]]));
    for (const [repo, [one, two]] of Object.entries(images)) {
      await pushImage(source, `van/${repo}`, '1', one!);
      await pushImage(source, `van/${repo}`, '2', two!);
    }
    const first = await workers(url, ['van/**']);
    for (const r of first) expect(r.artifacts).toMatchObject({ planned: 12, copied: 12, failed: 0 });

    for (const img of [...images.gone!, ...images.out!]) await deleteManifest(source, `van/${repo(img, images)}`, img.digest);
    await deleteManifest(source, 'van/stay', images.stay![1]!.digest);
    const second = await workers(url, ['van/gone', 'van/stay', 'van/a', 'van/b', 'van/c']);
    const deleted = second.flatMap((r) => r.deleted).sort((x, y) => `${x.repository}:${x.tag}`.localeCompare(`${y.repository}:${y.tag}`));
    expect(deleted).toEqual([
      { repository: 'vm/van/gone', tag: '1' },
      { repository: 'vm/van/gone', tag: '2' },
      { repository: 'vm/van/stay', tag: '2' },
    ]);
    // One worker deleted; both report the same whole run.
    expect(second.filter((r) => r.deleted.length).length).toBe(1);
    expect(await listTags(destination, 'vm/van/gone')).toEqual([]);
    expect(await listTags(destination, 'vm/van/stay')).toEqual(['1']);
    expect((await listTags(destination, 'vm/van/out')).sort()).toEqual(['1', '2']);
  }, 120_000);
});

function repo(img: { digest: string }, images: Record<string, Array<{ digest: string }>>): string {
  return Object.entries(images).find(([, imgs]) => imgs.some((i) => i.digest === img.digest))![0];
}

// The dry run's inspection answers from the destination repository's tag list when it has one, as a
// sync does: no manifest HEAD for a tag the list lacks, no blob HEAD in an empty repository.
import { describe, expect, it } from 'vitest';
import { PlanInspector } from '../../src/engine/plan-details.js';
import type { WorkItem } from '../../src/plan/types.js';
import type { RegistryClient } from '../../src/registry/client.js';
import type { DestinationTags } from '../../src/transfer/artifact-copier.js';
import { buildImage } from '../helpers/index.js';

const image = buildImage({ layers: [100, 200] });

function item(tag: string): WorkItem {
  return { rule: 'r', sourceRegistry: 's', destinationRegistry: 'd', sourceRepository: 'app', destinationRepository: 'app', sourceReference: tag, tags: [tag] };
}

function clients(present: { tags: Record<string, string>; blobs: Set<string> }) {
  const calls = { headManifest: 0, headBlob: 0 };
  const source = {
    getManifest: async () => ({ digest: image.digest, bytes: image.manifest, mediaType: image.mediaType }),
  } as unknown as RegistryClient;
  const destination = {
    headManifest: async (_repo: string, ref: string) => {
      calls.headManifest++;
      const digest = present.tags[ref];
      return digest ? { digest } : undefined;
    },
    headBlob: async (_repo: string, digest: string) => {
      calls.headBlob++;
      return present.blobs.has(digest) ? { size: 1, acceptRanges: false } : undefined;
    },
  } as unknown as RegistryClient;
  return { source, destination, calls };
}

const known = (tags: string[]): Promise<DestinationTags> => Promise.resolve({ tags: async () => new Set(tags) });

describe('PlanInspector with the destination tag list', () => {
  it('makes no HEAD into an empty repository and counts every blob missing', async () => {
    const { source, destination, calls } = clients({ tags: {}, blobs: new Set() });
    const inspector = new PlanInspector(source, destination, false, 4);
    await inspector.add([item('1'), item('2')], known([]));
    const plan = await inspector.done();
    expect(plan.copies.map((c) => c.action)).toEqual(['copy', 'copy']);
    expect(plan.blobs).toBe(3); // config + 2 layers, counted once across the two tags
    expect(calls).toEqual({ headManifest: 0, headBlob: 0 });
  });

  it('HEADs only the tags the list names, and the blobs of a repository that has tags', async () => {
    const { source, destination, calls } = clients({ tags: { '1': image.digest }, blobs: new Set([image.config.digest, ...image.layers.map((l) => l.digest)]) });
    const inspector = new PlanInspector(source, destination, false, 4);
    await inspector.add([item('1'), item('2')], known(['1']));
    const plan = await inspector.done();
    expect(plan.copies.map((c) => [c.tags[0], c.action])).toEqual([
      ['1', 'present'],
      ['2', 'copy'],
    ]);
    expect(plan.blobs).toBe(0);
    expect(calls).toEqual({ headManifest: 1, headBlob: 3 });
  });

  it('HEADs everything when the list is unknown (it failed or was not asked for)', async () => {
    const { source, destination, calls } = clients({ tags: {}, blobs: new Set() });
    const inspector = new PlanInspector(source, destination, false, 4);
    await inspector.add([item('1')], Promise.resolve({ tags: async () => undefined }));
    await inspector.add([item('2')]);
    const plan = await inspector.done();
    expect(plan.copies.map((c) => c.action)).toEqual(['copy', 'copy']);
    expect(calls).toEqual({ headManifest: 2, headBlob: 6 });
  });
});

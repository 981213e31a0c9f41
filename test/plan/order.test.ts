// Push order (#15): a repository's artifacts are planned oldest first by the source's push time.
import { describe, expect, it } from 'vitest';
import { ruleSchema } from '../../src/config/schema.js';
import { buildRulePlan } from '../../src/plan/build.js';
import { artifactPushTime, orderOldestFirst } from '../../src/plan/order.js';
import type { SourceArtifact } from '../../src/providers/types.js';
import { HarborApi } from '../../src/providers/harbor-api.js';
import { startHarborStub } from '../helpers/harbor-stub.js';

const rule = ruleSchema.parse({ name: 'r', source: 's', destination: 'd', filters: { untagged: true } });
const opts = { sourceRegistry: 's', destinationRegistry: 'd' };
const at = (iso: string) => new Date(iso);

describe('push order', () => {
  it('plans each repository oldest first; repositories keep their listing order', async () => {
    const artifacts: SourceArtifact[] = [
      { repository: 'p/app', digest: 'sha256:c', tags: ['3'], pushedAt: at('2024-03-01T00:00:00Z') },
      { repository: 'p/lib', digest: 'sha256:y', tags: ['b'], pushedAt: at('2024-09-01T00:00:00Z') },
      { repository: 'p/app', digest: 'sha256:a', tags: ['1'], pushedAt: at('2024-01-01T00:00:00Z') },
      { repository: 'p/lib', digest: 'sha256:x', tags: ['a'], pushedAt: at('2024-08-01T00:00:00Z') },
      { repository: 'p/app', digest: 'sha256:b', tags: ['2'], tagPushedAt: { '2': at('2024-02-01T00:00:00Z') } },
    ];
    const plan = await buildRulePlan(rule, artifacts, opts);
    expect(plan.items.map((i) => `${i.sourceRepository}:${i.tags[0]}`)).toEqual(['p/app:1', 'p/app:2', 'p/app:3', 'p/lib:a', 'p/lib:b']);
  });

  it('keeps the listing order without push times (plain registries), and puts unknown times after known ones', () => {
    const plain = [{ repository: 'r', tags: ['z'] }, { repository: 'r', tags: ['a'] }];
    expect(orderOldestFirst(plain, (a) => a)).toEqual(plain);
    const mixed: SourceArtifact[] = [
      { repository: 'r', tags: ['unknown-1'] },
      { repository: 'r', tags: ['new'], pushedAt: at('2024-02-01T00:00:00Z') },
      { repository: 'r', tags: ['unknown-2'] },
      { repository: 'r', tags: ['old'], pushedAt: at('2024-01-01T00:00:00Z') },
      { repository: 'r', tags: ['old-too'], pushedAt: at('2024-01-01T00:00:00Z') },
    ];
    expect(orderOldestFirst(mixed, (a) => a).map((a) => a.tags[0])).toEqual(['old', 'old-too', 'new', 'unknown-1', 'unknown-2']);
    expect(artifactPushTime({ repository: 'r', tags: ['a', 'b'], tagPushedAt: { a: at('2024-05-01T00:00:00Z'), b: at('2024-04-01T00:00:00Z') } })).toBe(Date.parse('2024-04-01T00:00:00Z'));
  });

  it("orders a Harbor listing (newest first, as Harbor answers) by Harbor's push_time", async () => {
    const harbor = await startHarborStub({
      maxPageSize: 2,
      artifacts: ['2024-04-01', '2024-01-01', '2024-03-01', '2024-02-01'].map((day, i) => ({
        repository: 'team/app',
        digest: `sha256:${String(i).repeat(64)}`,
        tags: [`t-${day}`],
        pushTime: `${day}T00:00:00Z`,
      })),
    });
    try {
      const listing = new HarborApi({ url: harbor.url }).listArtifacts();
      const listed: string[] = [];
      async function* record() {
        for await (const a of listing) {
          listed.push(a.tags[0]!);
          yield a;
        }
      }
      const plan = await buildRulePlan(rule, record(), opts);
      expect(listed).toEqual(['t-2024-04-01', 't-2024-03-01', 't-2024-02-01', 't-2024-01-01']); // Harbor: newest first
      expect(plan.items.map((i) => i.tags[0])).toEqual(['t-2024-01-01', 't-2024-02-01', 't-2024-03-01', 't-2024-04-01']);
    } finally {
      await harbor.close();
    }
  });
});

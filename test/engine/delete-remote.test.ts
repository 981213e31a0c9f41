// deleteRemote's per-repository bookkeeping (GoneTags and the functions it is made of) over a real
// state store: candidates per listed repository, repositories gone altogether, scope, unreadable
// repositories and the shared-manifest rule.
import { describe, expect, it } from 'vitest';
import { GoneTags, repositoryDeletionCandidates, sharedManifestCheck, vanishedRepositoryCandidates } from '../../src/engine/delete-remote.js';
import { SqliteState } from '../../src/state/sqlite.js';
import type { PushedTag } from '../../src/state/types.js';

const pushed = (sourceRepository: string, sourceTag: string, digest = `sha256:${sourceRepository}-${sourceTag}`): PushedTag => ({
  sourceRepository,
  sourceTag,
  repository: `m/${sourceRepository}`,
  tag: sourceTag,
  digest,
});
const keys = (tags: PushedTag[]) => tags.map((t) => `${t.sourceRepository}:${t.sourceTag}`).sort();

describe('deleteRemote candidates', () => {
  it('per listed repository, for repositories gone altogether in scope, never for unreadable or out-of-scope ones', async () => {
    const state = SqliteState.memory();
    await state.recordPushed('r', 'd@h', [
      pushed('a', '1'),
      pushed('a', '2'),
      pushed('gone', '1'),
      pushed('refused', '1'),
      pushed('filtered', '1'),
      pushed('again', '1'),
      pushed('again', '2'),
    ]);
    expect(keys(await repositoryDeletionCandidates(state, 'r', 'd@h', 'a', new Set(['1', '3'])))).toEqual(['a:2']);
    const inScope = (repo: string) => repo !== 'filtered';
    expect(keys(await vanishedRepositoryCandidates(state, 'r', 'd@h', (repo) => Promise.resolve(repo === 'a'), inScope))).toEqual(['again:1', 'again:2', 'gone:1', 'refused:1']);

    const gone = new GoneTags(state, 'r', 'd@h', inScope);
    await gone.repository('a', new Set(['1']));
    gone.unreadable('refused');
    // A repository the listing returns twice: a tag of either part is still published.
    await gone.repository('again', new Set(['1']));
    await gone.repository('again', new Set(['2']));
    const decided = await gone.finish();
    expect(keys(decided.delete)).toEqual(['a:2', 'gone:1']);
    expect(decided.keep).toEqual([]);
    await state.close();
  });

  it('keeps a candidate whose manifest a tag that is not a candidate still points at', async () => {
    const state = SqliteState.memory();
    await state.recordPushed('r', 'd@h', [pushed('a', 'old', 'sha256:same'), pushed('a', 'new', 'sha256:same'), pushed('a', 'x', 'sha256:x1'), pushed('a', 'y', 'sha256:x1')]);
    const candidates = await repositoryDeletionCandidates(state, 'r', 'd@h', 'a', new Set(['new']));
    const decided = await sharedManifestCheck(state, 'r', 'd@h', candidates);
    // x and y share a manifest and are both gone: both go.
    expect(keys(decided.delete)).toEqual(['a:x', 'a:y']);
    expect(decided.keep.map((k) => [k.candidate.sourceTag, k.reason])).toEqual([['old', 'the same manifest is still published for a:new']]);
    await state.close();
  });
});

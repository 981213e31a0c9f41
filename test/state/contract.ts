// The StateStore contract, run against each implementation (sqlite.test.ts, postgres.test.ts): what
// callers rely on whatever the database — look-ups, a read seeing earlier writes, persistence across
// a reopen, rule state bound to its destination and read in pages, the execution history.
import { describe, expect, it } from 'vitest';
import type { StateStore } from '../../src/state/types.js';

/** Opens the same store anew each call (a new process on the same directory or database). */
export type OpenStore = () => StateStore;

export function describeStateContract(name: string, fresh: () => Promise<OpenStore>): void {
  describe(`${name}: the StateStore contract`, () => {
    it('records blobs, mount sources, manifests and upload checkpoints, and finds them after a reopen', async () => {
      const open = await fresh();
      const s = open();
      await s.checkpointUpload('d@h', 'a/b', 'sha256:1', 'http://r/v2/a/b/blobs/uploads/x', 1024);
      expect(await s.upload('d@h', 'a/b', 'sha256:1')).toMatchObject({ location: 'http://r/v2/a/b/blobs/uploads/x', offset: 1024 });
      // Not awaited: a read sees every write issued before it.
      void s.recordBlob('d@h', 'a/b', 'sha256:1', 10);
      void s.recordBlob('d@h', 'a/c', 'sha256:1', 10);
      void s.recordBlob('other@h', 'a/d', 'sha256:1', 10);
      void s.recordManifest('d@h', 'a/b', 'sha256:m');
      expect(await s.knownBlob('d@h', 'a/b', 'sha256:1')).toMatchObject({ size: 10 });
      expect(await s.upload('d@h', 'a/b', 'sha256:1')).toBeUndefined(); // the blob is complete: its session is done
      expect((await s.mountSources('d@h', 'sha256:1')).sort()).toEqual(['a/b', 'a/c']);
      await s.forgetBlob('d@h', 'a/c', 'sha256:1');
      await s.checkpointUpload('d@h', 'a/b', 'sha256:2', 'http://r/v2/a/b/blobs/uploads/y', 4096);
      await s.checkpointUpload('d@h', 'a/b', 'sha256:3', 'http://r/v2/a/b/blobs/uploads/z', 1);
      await s.clearUpload('d@h', 'a/b', 'sha256:3');
      await s.close();

      const again = open();
      expect(await again.knownBlob('d@h', 'a/b', 'sha256:1')).toMatchObject({ size: 10 });
      expect(await again.knownBlob('d@h', 'a/c', 'sha256:1')).toBeUndefined();
      expect(await again.mountSources('d@h', 'sha256:1')).toEqual(['a/b']);
      expect(await again.knownManifest('d@h', 'a/b', 'sha256:m')).toBeDefined();
      expect(await again.knownManifest('d@h', 'a/c', 'sha256:m')).toBeUndefined();
      expect(await again.upload('d@h', 'a/b', 'sha256:2')).toMatchObject({ offset: 4096 });
      expect(await again.upload('d@h', 'a/b', 'sha256:3')).toBeUndefined();
      await again.close();
    });

    it('lists what a rule pushed in pages, by manifest, and starts clean when the rule points elsewhere', async () => {
      const tag = (i: number, digest = `sha256:${i}`) => ({ sourceRepository: `src/r${i % 7}`, sourceTag: `v${i}`, repository: `dst/r${i % 7}`, tag: `v${i}`, digest });
      const open = await fresh();
      const s = open();
      await s.recordPushed('r', 'd@h', Array.from({ length: 2500 }, (_, i) => tag(i)));
      await s.recordPushed('r', 'd@h', [tag(1, 'sha256:new')]); // replaced by source tag
      await s.recordPushed('other', 'd@h', [tag(1)]);
      await s.forgetPushed('r', 'd@h', 'src/r2', 'v2');
      const all = [];
      for await (const t of s.pushed('r', 'd@h')) all.push(t);
      expect(all).toHaveLength(2499);
      expect(new Set(all.map((t) => `${t.sourceRepository}:${t.sourceTag}`)).size).toBe(2499);
      expect(all.find((t) => t.sourceTag === 'v1')?.digest).toBe('sha256:new');
      expect(await s.pushedManifest('r', 'd@h', 'dst/r3', 'sha256:3')).toEqual([tag(3)]);
      // One source repository's entries (an index range, paged past 1000) and the distinct repositories.
      await s.recordPushed('r', 'd@h', Array.from({ length: 1500 }, (_, i) => ({ ...tag(i), sourceRepository: 'src/big', sourceTag: `t${i}` })));
      const big = [];
      for await (const t of s.pushedIn('r', 'd@h', 'src/big')) big.push(t);
      expect(big).toHaveLength(1500);
      expect(new Set(big.map((t) => t.sourceTag)).size).toBe(1500);
      const r2 = [];
      for await (const t of s.pushedIn('r', 'd@h', 'src/r2')) r2.push(t);
      expect(r2).toHaveLength(356); // 2500 / 7, less the forgotten v2
      expect(r2.every((t) => t.sourceRepository === 'src/r2')).toBe(true);
      const repos = [];
      for await (const r of s.pushedRepositories('r', 'd@h')) repos.push(r);
      expect(repos).toEqual(['src/big', ...Array.from({ length: 7 }, (_, i) => `src/r${i}`)]);
      const none = [];
      for await (const t of s.pushedIn('r', 'x@elsewhere', 'src/big')) none.push(t);
      for await (const r of s.pushedRepositories('r', 'x@elsewhere')) none.push(r);
      expect(none).toEqual([]);
      await s.close();

      const again = open();
      const elsewhere = [];
      for await (const t of again.pushed('r', 'x@elsewhere')) elsewhere.push(t);
      expect(elsewhere).toEqual([]);
      await again.recordPushed('r', 'x@elsewhere', [tag(9)]);
      const now = [];
      for await (const t of again.pushed('r', 'x@elsewhere')) now.push(t);
      expect(now).toEqual([tag(9)]);
      const old = [];
      for await (const t of again.pushed('r', 'd@h')) old.push(t);
      expect(old).toEqual([]); // never delete at the old destination from memories of the new one
      await again.close();
    });

    it('stores summaries and details, lists newest first, deletes, and keeps the numbering', async () => {
      const open = await fresh();
      const s = open();
      for (const id of [1, 2, 3]) await s.saveExecution({ id, rule: id === 2 ? 'b' : 'a', status: 'ok', summary: { id }, detail: { id, items: [id] } });
      expect((await s.executions()).map((e) => e.id)).toEqual([3, 2, 1]);
      expect((await s.executions({ rule: 'a', limit: 1 })).map((e) => e.id)).toEqual([3]);
      expect(await s.execution(2)).toMatchObject({ rule: 'b', summary: { id: 2 }, detail: { items: [2] } });
      await s.deleteExecutions([3]);
      expect(await s.execution(3)).toBeUndefined();
      await s.close();
      const again = open();
      expect(await again.lastExecutionId()).toBe(3);
      await again.close();
    });

    it('allocates execution ids above every stored one, never twice, also to stores opened side by side', async () => {
      const open = await fresh();
      const s = open();
      await s.saveExecution({ id: 7, rule: 'a', status: 'ok', summary: {} });
      expect(await s.allocateExecutionId()).toBe(8);
      await s.close();
      // Two stores at once where the backend allows it (PostgreSQL: daemon replicas), else one after the other.
      const first = open();
      const ids = await Promise.all(Array.from({ length: 20 }, () => first.allocateExecutionId()));
      let second: StateStore | undefined;
      try {
        second = open();
      } catch {
        await first.close();
        second = open();
      }
      ids.push(...(await Promise.all(Array.from({ length: 20 }, () => second!.allocateExecutionId()))));
      expect(new Set(ids).size).toBe(40);
      expect(Math.min(...ids)).toBeGreaterThan(8);
      expect(await second.lastExecutionId()).toBe(Math.max(...ids));
      await Promise.all([first.close(), second.close()]);
      const again = open();
      expect(await again.allocateExecutionId()).toBe(Math.max(...ids) + 1);
      await again.close();
    });

    it('lists executions by status', async () => {
      const open = await fresh();
      const s = open();
      const statuses = ['ok', 'running', 'queued', 'failed', 'running'];
      for (const [i, status] of statuses.entries()) await s.saveExecution({ id: i + 1, rule: i % 2 ? 'b' : 'a', status, summary: { id: i + 1 } });
      expect((await s.executions({ statuses: ['running', 'queued'] })).map((e) => e.id)).toEqual([5, 3, 2]);
      expect((await s.executions({ statuses: ['running', 'queued'], limit: 1 })).map((e) => e.id)).toEqual([5]);
      expect((await s.executions({ statuses: ['running'], rule: 'b' })).map((e) => e.id)).toEqual([2]);
      expect(await s.executions({ statuses: [] })).toEqual([]);
      await s.close();
    });
  });
}

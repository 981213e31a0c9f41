import { appendFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Journal } from '../../src/transfer/journal.js';

describe('Journal', () => {
  it('survives a torn last line and reopens with what was recorded', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-journal-'));
    const j = Journal.open(dir);
    j.recordBlob('d@h', 'a/b', 'sha256:1', 10);
    j.recordManifest('d@h', 'a/b', 'sha256:m');
    j.close();
    appendFileSync(join(dir, 'journal.jsonl'), '{"t":"b","r":"d@h","p":"a/c","d":"sha2'); // a kill mid-write
    const again = Journal.open(dir);
    expect(again.blob('d@h', 'a/b', 'sha256:1')?.size).toBe(10);
    expect(again.manifest('d@h', 'a/b', 'sha256:m')).toBeDefined();
    expect(again.blobLocations('d@h', 'sha256:1')).toEqual(['a/b']);
    again.close();
  });

  it('compacts a journal of mostly superseded lines when it is opened, keeping every live record', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-journal-'));
    const j = Journal.open(dir);
    for (let i = 0; i < 50; i++) {
      j.recordBlob('d@h', 'a/b', 'sha256:1', 10); // re-recorded on every run
      j.checkpointUpload('d@h', 'a/b', 'sha256:2', 'http://r/v2/a/b/blobs/uploads/x', i * 100);
    }
    j.clearUpload('d@h', 'a/b', 'sha256:2');
    j.checkpointUpload('d@h', 'a/b', 'sha256:3', 'http://r/v2/a/b/blobs/uploads/y', 4096);
    j.recordManifest('d@h', 'a/b', 'sha256:m');
    j.close();
    const file = join(dir, 'journal.jsonl');
    expect(readFileSync(file, 'utf8').trim().split('\n').length).toBe(103);

    const compacted = Journal.open(dir, { compactAfterLines: 50 });
    expect(readFileSync(file, 'utf8').trim().split('\n').length).toBe(3);
    expect(compacted.blob('d@h', 'a/b', 'sha256:1')?.size).toBe(10);
    expect(compacted.upload('d@h', 'a/b', 'sha256:2')).toBeUndefined();
    expect(compacted.upload('d@h', 'a/b', 'sha256:3')).toMatchObject({ offset: 4096 });
    expect(compacted.manifest('d@h', 'a/b', 'sha256:m')).toBeDefined();
    compacted.recordBlob('d@h', 'x/y', 'sha256:4', 1); // still appendable after the rename
    compacted.close();
    expect(Journal.open(dir).blob('d@h', 'x/y', 'sha256:4')).toBeDefined();
  });
});

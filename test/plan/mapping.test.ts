import { describe, expect, it } from 'vitest';
import { MappingError, compileRename, createMapper, flattenRepository, mapRepository } from '../../src/plan/mapping.js';

describe('flattening with a namespace (Harbor dest_namespace_replace_count)', () => {
  const src = 'a/b/c/img';
  it.each([
    ['none', 'dev/a/b/c/img'],
    ['1', 'dev/b/c/img'],
    ['2', 'dev/c/img'],
    ['3', 'dev/img'],
    ['all', 'dev/img'],
  ] as const)('flatten %s on a/b/c/img → %s', (flatten, expected) => {
    expect(flattenRepository(src, { destinationNamespace: 'dev', flatten })).toBe(expected);
    expect(mapRepository(src, { destinationNamespace: 'dev', flatten })).toBe(expected);
  });

  it('on a two-level path: 1 keeps the name, 2 leaves the bare namespace, 3 is an error for that repository', () => {
    expect(flattenRepository('library/nginx', { destinationNamespace: 'dev', flatten: '1' })).toBe('dev/nginx');
    expect(flattenRepository('library/nginx', { destinationNamespace: 'dev', flatten: '2' })).toBe('dev');
    let err: unknown;
    try {
      flattenRepository('library/nginx', { destinationNamespace: 'dev', flatten: '3' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MappingError);
    expect((err as MappingError).repository).toBe('library/nginx');
    expect((err as MappingError).message).toMatch(/flatten: 3 removes 3 leading level\(s\) but "library\/nginx" has only 2/);
  });

  it('on a single component: none and all prefix it, 1 leaves the namespace, 2 and 3 are errors', () => {
    expect(flattenRepository('nginx', { destinationNamespace: 'dev', flatten: 'none' })).toBe('dev/nginx');
    expect(flattenRepository('nginx', { destinationNamespace: 'dev', flatten: 'all' })).toBe('dev/nginx');
    expect(flattenRepository('nginx', { destinationNamespace: 'dev', flatten: '1' })).toBe('dev');
    expect(() => flattenRepository('nginx', { destinationNamespace: 'dev', flatten: '2' })).toThrow(MappingError);
  });

  it('accepts a nested namespace and ignores slashes around it', () => {
    expect(flattenRepository('a/b/img', { destinationNamespace: '/mirror/idc/', flatten: '1' })).toBe('mirror/idc/b/img');
  });
});

describe('flattening without a namespace', () => {
  it('keeps the source path for none/1/2/3 (Harbor ignores the level without a namespace)', () => {
    for (const flatten of ['none', '1', '2', '3'] as const) {
      expect(flattenRepository('a/b/img', { flatten })).toBe('a/b/img');
      expect(flattenRepository('x', { flatten })).toBe('x');
    }
    expect(flattenRepository('a/b/img', { destinationNamespace: '', flatten: '2' })).toBe('a/b/img');
  });
  it('all keeps only the last component', () => {
    expect(flattenRepository('a/b/img', { flatten: 'all' })).toBe('img');
    expect(flattenRepository('img', { flatten: 'all' })).toBe('img');
  });
});

describe('rename', () => {
  const rule = {
    destinationNamespace: 'dev',
    flatten: 'none' as const,
    rename: [
      { from: '^dev/legacy-(?<app>.*)$', to: 'dev/old/$<app>' },
      { from: '^dev/(.*)$', to: 'prod/$1' },
    ],
  };
  it('applies after flattening; the first rule that matches wins and later rules do not see its output', () => {
    expect(mapRepository('legacy-app', rule)).toBe('dev/old/app');
    expect(mapRepository('app', rule)).toBe('prod/app');
    expect(mapRepository('team/app', { ...rule, flatten: 'all' })).toBe('prod/app');
  });
  it('is unanchored and replaces the first occurrence, like String.replace', () => {
    const r = compileRename([{ from: '-', to: '/' }]);
    expect(r('a-b-c')).toBe('a/b-c');
    expect(compileRename([{ from: 'nomatch', to: 'x' }])('keep')).toBe('keep');
    expect(compileRename([])('same')).toBe('same');
  });
  it('validates the result as an OCI repository name', () => {
    expect(() => mapRepository('app', { flatten: 'none', rename: [{ from: 'app', to: 'App' }] })).toThrow(/"app" maps to "App" \(renamed from "app"\), which is not a valid OCI repository name/);
    expect(() => mapRepository('app', { flatten: 'none', rename: [{ from: '^', to: '/' }] })).toThrow(MappingError);
  });
  it('reports an invalid regex as a MappingError naming the rule', () => {
    expect(() => compileRename([{ from: 'ok', to: 'x' }, { from: '(', to: 'x' }])).toThrow(/rename\[1\]\.from: invalid regular expression/);
  });
});

describe('createMapper', () => {
  it('maps many repositories with one compiled rule and remembers failures', () => {
    const map = createMapper({ destinationNamespace: 'dev', flatten: '2', rename: [{ from: 'nginx', to: 'web' }] });
    expect(map('library/nginx')).toBe('dev');
    expect(map('a/b/nginx')).toBe('dev/web');
    expect(() => map('x')).toThrow(MappingError);
    expect(() => map('x')).toThrow(MappingError);
  });
});

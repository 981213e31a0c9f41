import { describe, expect, it } from 'vitest';
import {
  validateHarborProject,
  validateSwrOrganization,
  validateSwrRepository,
  validateTcrNamespace,
  validateTcrRepository,
} from '../../src/providers/names.js';

describe('TCR names', () => {
  it.each(['ab', 'team-a', 'a.b_c-d', 'x1', '0a', 'a'.repeat(30)])('namespace %s is valid', (n) => {
    expect(validateTcrNamespace(n)).toBeUndefined();
  });

  it.each([
    ['a', /2–30/],
    ['a'.repeat(31), /2–30/],
    ['Team', /lowercase/],
    ['-ab', /separator|"\."/],
    ['ab-', /either end/],
    ['a--b', /two separators/],
    ['a._b', /two separators/],
    ['a/b', /lowercase/],
    ['a b', /lowercase/],
  ])('namespace %s is refused', (n, reason) => {
    expect(validateTcrNamespace(n)).toMatch(reason);
  });

  it('repositories: namespace plus one or more levels', () => {
    expect(validateTcrRepository('team-a/nginx')).toBeUndefined();
    expect(validateTcrRepository('team-a/base/images/nginx')).toBeUndefined();
    expect(validateTcrRepository('team-a/my__app--x')).toBeUndefined();
    expect(validateTcrRepository('nginx')).toMatch(/needs a namespace/);
    expect(validateTcrRepository('t/nginx')).toMatch(/2–30.*in repository "t\/nginx"/);
    expect(validateTcrRepository('team/')).toMatch(/1–244/);
    expect(validateTcrRepository('team/a//b')).toMatch(/path component ""/);
    expect(validateTcrRepository('team/Nginx')).toMatch(/"Nginx"/);
    expect(validateTcrRepository(`team/${'a'.repeat(245)}`)).toMatch(/1–244/);
  });
});

describe('SWR names', () => {
  it.each(['a', 'group', 'my-org', 'my--org', 'my_org', 'my__org', 'my.org', 'org1', 'a'.repeat(64)])('organization %s is valid', (n) => {
    expect(validateSwrOrganization(n)).toBeUndefined();
  });

  it.each(['1org', 'Org', 'org-', 'org_', 'my___org', 'my._org', 'my.-org', 'a'.repeat(65), ''])('organization %s is refused', (n) => {
    expect(validateSwrOrganization(n)).toBeDefined();
  });

  it('repositories are exactly organization/name', () => {
    expect(validateSwrRepository('group/nginx')).toBeUndefined();
    expect(validateSwrRepository('group/my-app_1.2')).toBeUndefined();
    expect(validateSwrRepository('group/0ab')).toBeUndefined();
    expect(validateSwrRepository('nginx')).toMatch(/needs an organization/);
    expect(validateSwrRepository('1group/nginx')).toMatch(/start with a lowercase letter/);
    expect(validateSwrRepository('group/Nginx')).toMatch(/"Nginx"/);
    expect(validateSwrRepository('group/-x')).toMatch(/"-x"/);
    expect(validateSwrRepository(`group/${'a'.repeat(129)}`)).toMatch(/1–128/);
  });

  it('a deeper name suggests flatten: all, unless nesting is allowed', () => {
    const reason = validateSwrRepository('group/team/nginx');
    expect(reason).toMatch(/exactly two/);
    expect(reason).toContain('flatten: all');
    expect(validateSwrRepository('group/team/nginx', { allowNested: true })).toBeUndefined();
    expect(validateSwrRepository('group/team//nginx', { allowNested: true })).toBeDefined();
  });
});

describe('Harbor project names', () => {
  it.each(['a', 'library', 'team-a', 'a.b_c-d', '0', 'a'.repeat(255)])('%s is valid', (n) => {
    expect(validateHarborProject(n)).toBeUndefined();
  });

  it.each(['', 'Library', '-a', 'a-', 'a--b', 'a/b', 'a b', 'a'.repeat(256)])('%s is refused', (n) => {
    expect(validateHarborProject(n)).toBeDefined();
  });
});

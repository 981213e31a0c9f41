import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseConfig } from '../../src/config/load.js';
import { parseBandwidth, parseSize } from '../../src/config/units.js';

function writeConfig(text: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'ferry-cfg-')), 'ferry.yaml');
  writeFileSync(file, text);
  return file;
}

const minimal = `
registries:
  harbor: { url: "https://harbor.example.com", kind: harbor, username: "robot$sync", password: "\${HARBOR_PASSWORD}" }
  tcr: { url: "https://example.tencentcloudcr.com", kind: tcr, username: "100012345678", password: x }
rules:
  - name: idc-to-tcr
    source: harbor
    destination: tcr
`;

describe('config loading', () => {
  it('applies defaults and interpolates ${ENV}', () => {
    const cfg = loadConfig(writeConfig(minimal), { HARBOR_PASSWORD: 'pw' });
    expect(cfg.registries.harbor!.password).toBe('pw');
    expect(cfg.registries.harbor!.username).toBe('robot$sync');
    expect(cfg.transfer.concurrency).toBe(8);
    expect(cfg.transfer.stateDir).toBe('.ferry');
    expect(cfg.rules[0]!.flatten).toBe('none');
    expect(cfg.rules[0]!.override).toBe(true);
    expect(cfg.rules[0]!.trigger).toBe('manual');
  });

  it('names the file, the key path and what was expected for an unknown key', () => {
    const file = writeConfig(`${minimal}    overide: false\n`);
    try {
      loadConfig(file, { HARBOR_PASSWORD: 'pw' });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const e = err as ConfigError;
      expect(e.message).toContain(file);
      expect(e.problems).toContainEqual({ path: 'rules[0].overide', message: 'unknown key "overide"' });
    }
  });

  it('reports a missing environment variable with the key that used it', () => {
    expect(() => loadConfig(writeConfig(minimal), {})).toThrow(/registries\.harbor\.password: environment variable HARBOR_PASSWORD is not set/);
  });

  it('reports wrong types, bad enums, unknown registries and bad URLs', () => {
    const e = (() => {
      try {
        parseConfig(
          {
            registries: { a: { url: 'harbor.example.com', kind: 'quay' } },
            transfer: { concurrency: 'many', bandwidth: 'fast' },
            rules: [{ name: 'r', source: 'a', destination: 'nope', flatten: 7 }],
          },
          'x.yaml',
          {},
        );
      } catch (err) {
        return err as ConfigError;
      }
      throw new Error('expected a ConfigError');
    })();
    const byPath = Object.fromEntries(e.problems.map((p) => [p.path, p.message]));
    expect(byPath['registries.a.url']).toMatch(/absolute URL with scheme/);
    expect(byPath['registries.a.kind']).toMatch(/expected one of "harbor" \| "registry" \| "tcr" \| "swr", got "quay"/);
    expect(byPath['transfer.concurrency']).toMatch(/expected number, got "many"/);
    expect(byPath['transfer.bandwidth']).toMatch(/expected a bandwidth/);
    expect(byPath['rules[0].flatten']).toBe('expected one of none | 1 | 2 | 3 | all, got 7');
  });

  it('reports rules that name an undefined registry, and duplicate rule names', () => {
    const cfg = { registries: { a: { url: 'https://a.example' } }, rules: [{ name: 'r', source: 'a', destination: 'nope' }, { name: 'r', source: 'a', destination: 'a' }] };
    expect(() => parseConfig(cfg, 'x.yaml', {})).toThrow(/rules\[0\]\.destination: unknown registry "nope" \(defined: a\)[\s\S]*rules\[1\]\.name: duplicate rule name "r"/);
  });

  it('reports YAML syntax errors with the file', () => {
    expect(() => loadConfig(writeConfig('registries: [\n'))).toThrow(ConfigError);
  });

  it('keeps $${VAR} literal', () => {
    const cfg = parseConfig({ registries: { a: { url: 'https://a.example', password: 'p$${X}' } } }, 'x', {});
    expect(cfg.registries.a!.password).toBe('p${X}');
  });
});

describe('units', () => {
  it('parses bandwidths in bits and bytes', () => {
    expect(parseBandwidth('200Mbps')).toBe(25_000_000);
    expect(parseBandwidth('25MB/s')).toBe(25_000_000);
    expect(parseBandwidth('512KiB/s')).toBe(512 * 1024);
    expect(parseBandwidth('1Gbit/s')).toBe(125_000_000);
    expect(parseBandwidth('0')).toBe(0);
    expect(parseBandwidth(0)).toBe(0);
    expect(parseBandwidth('fast')).toBeNull();
  });
  it('parses sizes', () => {
    expect(parseSize('16MiB')).toBe(16 * 1024 * 1024);
    expect(parseSize('5MB')).toBe(5_000_000);
    expect(parseSize(1024)).toBe(1024);
    expect(parseSize('lots')).toBeNull();
  });
});

describe('filter patterns', () => {
  it('reports a bad glob, regex or semver range as a config error with its key path', () => {
    const cfg = { registries: { a: { url: 'https://a.example' } }, rules: [{ name: 'r', source: 'a', destination: 'a', filters: { tagRegex: '(', semver: 'not a range' } }] };
    expect(() => parseConfig(cfg, 'x.yaml', {})).toThrow(/rules\[0\]\.filters\.tagRegex: [\s\S]*rules\[0\]\.filters\.semver: /);
  });

  it('hints at common mistakes: a url ending in /v2, a password written as a number, an unknown time zone', () => {
    const problems = (cfg: unknown) => {
      try {
        parseConfig(cfg, 'x.yaml', {});
      } catch (err) {
        return (err as ConfigError).problems;
      }
      return [];
    };
    expect(problems({ registries: { a: { url: 'https://a.example/v2/' } } })).toContainEqual({
      path: 'registries.a.url',
      message: "ends in /v2: give the registry's base URL (e.g. https://harbor.example.com); Ferry adds /v2/ itself",
    });
    const numeric = problems({ registries: { a: { url: 'https://a.example', username: 'u', password: 123456 } } });
    expect(numeric).toEqual([{ path: 'registries.a.password', message: 'expected string, got a number (quote it in YAML: "...")' }]);
    expect(JSON.stringify(numeric)).not.toContain('123456');
    expect(problems({ registries: { a: { url: 'https://a.example' } }, daemon: { timezone: 'Mars/Olympus' } })).toContainEqual({
      path: 'daemon.timezone',
      message: 'unknown time zone "Mars/Olympus": expected an IANA zone such as UTC, Europe/Berlin or Asia/Shanghai',
    });
    expect(problems({ registries: { a: { url: 'https://a.example' } }, daemon: { timezone: 'Europe/Berlin' } })).toEqual([]);
  });

  it('names the key and the path of a caFile that cannot be read', () => {
    expect(() => parseConfig({ registries: { a: { url: 'https://a.example', caFile: '/nonexistent/ca.pem' } } }, 'x.yaml', {})).toThrow(
      /registries\.a\.caFile: cannot read "\/nonexistent\/ca\.pem": no such file/,
    );
  });

  it('drops the unset variables of a section the command does not use, and only there', () => {
    const raw = { registries: { a: { url: 'https://a.example', password: '${PW}' } }, daemon: { token: '${TOKEN}' } };
    const cfg = parseConfig({ ...raw, registries: { a: { url: 'https://a.example' } } }, 'x.yaml', {}, { unusedSections: ['daemon'] });
    expect(cfg.daemon?.token).toBeUndefined();
    expect(() => parseConfig(raw, 'x.yaml', {}, { unusedSections: ['daemon'] })).toThrow(/registries\.a\.password: environment variable PW is not set/);
    expect(() => parseConfig(raw, 'x.yaml', {})).toThrow(/daemon\.token: environment variable TOKEN is not set/);
  });
});

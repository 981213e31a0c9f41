// The SQLite schema. Tables are WITHOUT ROWID with the look-up key as primary key, so every hot
// look-up (is this blob in that repository? which repositories hold this digest?) is one b-tree
// descent and nothing needs to be loaded at start. Compact keys, since a migration writes a few rows
// per tag: registry keys are interned (`registries`), sha256 digests are stored as their 32 bytes
// (other algorithms as text; see codec.ts). The *_view views show them readable, for the sqlite3
// shell. `user_version` numbers the schema for migrations.
export const SCHEMA_VERSION = 2;

const DIGEST = (col: string) => `CASE typeof(${col}) WHEN 'blob' THEN 'sha256:' || lower(hex(${col})) ELSE ${col} END`;

export const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

-- Destination registry keys (name@host).
CREATE TABLE IF NOT EXISTS registries (
  id  INTEGER PRIMARY KEY,
  key TEXT NOT NULL UNIQUE
);

-- Blobs known per destination repository. (registry, digest) is a prefix of the key: the mount
-- sources of a digest are a range scan.
CREATE TABLE IF NOT EXISTS blobs (
  registry   INTEGER NOT NULL,
  digest     BLOB NOT NULL,
  repository TEXT NOT NULL,
  size       INTEGER,
  at         INTEGER NOT NULL,
  PRIMARY KEY (registry, digest, repository)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS manifests (
  registry   INTEGER NOT NULL,
  repository TEXT NOT NULL,
  digest     BLOB NOT NULL,
  at         INTEGER NOT NULL,
  PRIMARY KEY (registry, repository, digest)
) WITHOUT ROWID;

-- Resumable chunked uploads: the session URL and the last confirmed offset.
CREATE TABLE IF NOT EXISTS uploads (
  registry   INTEGER NOT NULL,
  repository TEXT NOT NULL,
  digest     BLOB NOT NULL,
  location   TEXT NOT NULL,
  offset     INTEGER NOT NULL,
  at         INTEGER NOT NULL,
  PRIMARY KEY (registry, repository, digest)
) WITHOUT ROWID;

-- deleteRemote: the destination each rule is bound to, and what it pushed per source tag.
CREATE TABLE IF NOT EXISTS rule_destinations (
  rule        TEXT PRIMARY KEY,
  destination TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS rule_tags (
  rule              TEXT NOT NULL,
  source_repository TEXT NOT NULL,
  source_tag        TEXT NOT NULL,
  repository        TEXT NOT NULL,
  tag               TEXT NOT NULL,
  digest            BLOB NOT NULL,
  PRIMARY KEY (rule, source_repository, source_tag)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rule_tags_manifest ON rule_tags (rule, repository, digest);

-- The daemon's execution history: summary for lists, detail (artifact-level log) read on request.
CREATE TABLE IF NOT EXISTS executions (
  id      INTEGER PRIMARY KEY,
  rule    TEXT NOT NULL,
  status  TEXT NOT NULL,
  summary TEXT NOT NULL,
  detail  TEXT
);
CREATE INDEX IF NOT EXISTS executions_rule ON executions (rule, id);

CREATE VIEW IF NOT EXISTS blob_view AS
  SELECT r.key AS registry, b.repository, ${DIGEST('b.digest')} AS digest, b.size, datetime(b.at / 1000, 'unixepoch') AS recorded
  FROM blobs b JOIN registries r ON r.id = b.registry;
CREATE VIEW IF NOT EXISTS manifest_view AS
  SELECT r.key AS registry, m.repository, ${DIGEST('m.digest')} AS digest, datetime(m.at / 1000, 'unixepoch') AS recorded
  FROM manifests m JOIN registries r ON r.id = m.registry;
CREATE VIEW IF NOT EXISTS upload_view AS
  SELECT r.key AS registry, u.repository, ${DIGEST('u.digest')} AS digest, u.location, u.offset, datetime(u.at / 1000, 'unixepoch') AS checkpointed
  FROM uploads u JOIN registries r ON r.id = u.registry;
CREATE VIEW IF NOT EXISTS rule_tag_view AS
  SELECT t.rule, d.destination, t.source_repository, t.source_tag, t.repository, t.tag, ${DIGEST('t.digest')} AS digest
  FROM rule_tags t JOIN rule_destinations d ON d.rule = t.rule;
`;

/**
 * Schema 1 (text registry keys and digests) to 2: the tables are rebuilt with compact keys. Runs in
 * one transaction before SCHEMA creates what is missing.
 */
export const MIGRATE_1_TO_2 = `
ALTER TABLE blobs RENAME TO blobs_v1;
ALTER TABLE manifests RENAME TO manifests_v1;
ALTER TABLE uploads RENAME TO uploads_v1;
ALTER TABLE rule_tags RENAME TO rule_tags_v1;
DROP INDEX IF EXISTS rule_tags_manifest;
`;

const ENCODE = (col: string) => `CASE WHEN ${col} GLOB 'sha256:*' AND length(${col}) = 71 THEN unhex(substr(${col}, 8)) ELSE ${col} END`;

export const MIGRATE_1_TO_2_COPY = `
INSERT OR IGNORE INTO registries (key) SELECT registry FROM blobs_v1 UNION SELECT registry FROM manifests_v1 UNION SELECT registry FROM uploads_v1;
INSERT INTO blobs SELECT (SELECT id FROM registries WHERE key = registry), ${ENCODE('digest')}, repository, size, at FROM blobs_v1;
INSERT INTO manifests SELECT (SELECT id FROM registries WHERE key = registry), repository, ${ENCODE('digest')}, at FROM manifests_v1;
INSERT INTO uploads SELECT (SELECT id FROM registries WHERE key = registry), repository, ${ENCODE('digest')}, location, offset, at FROM uploads_v1;
INSERT INTO rule_tags SELECT rule, source_repository, source_tag, repository, tag, ${ENCODE('digest')} FROM rule_tags_v1;
DROP TABLE blobs_v1;
DROP TABLE manifests_v1;
DROP TABLE uploads_v1;
DROP TABLE rule_tags_v1;
`;

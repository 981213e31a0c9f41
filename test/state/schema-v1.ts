// The schema 1 of the state database (before compact keys), frozen for the migration test.
// The SQLite schema. Tables are WITHOUT ROWID with the look-up key as primary key, so every hot
// look-up (is this blob in that repository? which repositories hold this digest?) is one b-tree
// descent and nothing needs to be loaded at start. `user_version` numbers the schema for migrations.


export const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

-- Blobs known per destination repository. (registry, digest) is a prefix of the key: the mount
-- sources of a digest are a range scan.
CREATE TABLE IF NOT EXISTS blobs (
  registry   TEXT NOT NULL,
  digest     TEXT NOT NULL,
  repository TEXT NOT NULL,
  size       INTEGER,
  at         INTEGER NOT NULL,
  PRIMARY KEY (registry, digest, repository)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS manifests (
  registry   TEXT NOT NULL,
  repository TEXT NOT NULL,
  digest     TEXT NOT NULL,
  at         INTEGER NOT NULL,
  PRIMARY KEY (registry, repository, digest)
) WITHOUT ROWID;

-- Resumable chunked uploads: the session URL and the last confirmed offset.
CREATE TABLE IF NOT EXISTS uploads (
  registry   TEXT NOT NULL,
  repository TEXT NOT NULL,
  digest     TEXT NOT NULL,
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
  digest            TEXT NOT NULL,
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
`;

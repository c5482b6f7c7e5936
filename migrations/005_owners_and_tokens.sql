-- taskbox registry, schema 5: owners and API tokens, for the HTTP transport.
--
-- Every task belongs to an owner: the owner of the token that created it over HTTP, or `local`
-- (stdio sessions, `serve --http --no-auth`, and every task made before this schema). Names are
-- unique per owner, so one owner's names say nothing about another's. SQLite cannot drop the
-- UNIQUE on tasks.name in place, so the table is rebuilt: migrations run with foreign keys off,
-- so dropping the old table cascades to nothing, and rowids are copied because the search index
-- (003) is keyed by them.

CREATE TABLE tasks_new (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    description     TEXT,
    status          TEXT NOT NULL,
    status_reason   TEXT,
    image           TEXT NOT NULL,
    container_id    TEXT,
    network         TEXT NOT NULL,
    network_name    TEXT,
    workspace       TEXT NOT NULL,
    shell           TEXT,
    exec_user       TEXT,
    memory_mb       INTEGER NOT NULL,
    cpus            REAL NOT NULL,
    pids            INTEGER NOT NULL,
    env_json        TEXT NOT NULL DEFAULT '{}',
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    version         INTEGER NOT NULL DEFAULT 1,
    repo_path       TEXT,
    repo_private    INTEGER NOT NULL DEFAULT 0,
    branch          TEXT,
    base_commit     TEXT,
    synced_commit   TEXT,
    container_image TEXT,
    forked_from     TEXT,
    owner           TEXT NOT NULL DEFAULT 'local',
    UNIQUE (owner, name)
);
INSERT INTO tasks_new (rowid, id, name, description, status, status_reason, image, container_id, network,
    network_name, workspace, shell, exec_user, memory_mb, cpus, pids, env_json, created_at, updated_at, version,
    repo_path, repo_private, branch, base_commit, synced_commit, container_image, forked_from, owner)
SELECT rowid, id, name, description, status, status_reason, image, container_id, network,
    network_name, workspace, shell, exec_user, memory_mb, cpus, pids, env_json, created_at, updated_at, version,
    repo_path, repo_private, branch, base_commit, synced_commit, container_image, forked_from, 'local'
FROM tasks;
DROP TABLE tasks;
ALTER TABLE tasks_new RENAME TO tasks;

CREATE INDEX tasks_by_created ON tasks(created_at DESC, id DESC);
CREATE INDEX tasks_by_status_created ON tasks(status, created_at DESC, id DESC);
CREATE INDEX tasks_by_owner_created ON tasks(owner, created_at DESC, id DESC);
CREATE INDEX tasks_by_owner_status_created ON tasks(owner, status, created_at DESC, id DESC);

-- The search triggers of schema 3 went with the old table.
CREATE TRIGGER search_tasks_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO search_tasks (rowid, text) VALUES (new.rowid, new.name || ' ' || COALESCE(new.description, ''));
END;
CREATE TRIGGER search_tasks_update AFTER UPDATE ON tasks
WHEN old.name IS NOT new.name OR old.description IS NOT new.description BEGIN
    DELETE FROM search_tasks WHERE rowid = old.rowid;
    INSERT INTO search_tasks (rowid, text) VALUES (new.rowid, new.name || ' ' || COALESCE(new.description, ''));
END;
CREATE TRIGGER search_tasks_delete AFTER DELETE ON tasks BEGIN
    DELETE FROM search_tasks WHERE rowid = old.rowid;
END;

-- Bearer tokens of the HTTP transport. Only a SHA-256 of each token is kept: the token itself
-- is shown once, by `taskbox token create`.
CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    label        TEXT,
    hash         TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
);
CREATE INDEX tokens_by_owner ON tokens(owner, created_at);

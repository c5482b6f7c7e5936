-- taskbox registry, schema 1. Applied by rusqlite_migration, tracked in PRAGMA user_version.
-- Timestamps are RFC 3339 UTC strings (they sort lexically). The task files under
-- tasks/<id>/ hold the same facts; this database is the index several servers share.

CREATE TABLE tasks (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    description   TEXT,
    status        TEXT NOT NULL,
    status_reason TEXT,
    image         TEXT NOT NULL,
    container_id  TEXT,
    network       TEXT NOT NULL,
    network_name  TEXT,
    workspace     TEXT NOT NULL,
    shell         TEXT,
    exec_user     TEXT,
    memory_mb     INTEGER NOT NULL,
    cpus          REAL NOT NULL,
    pids          INTEGER NOT NULL,
    env_json      TEXT NOT NULL DEFAULT '{}',
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    version       INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX tasks_by_created ON tasks(created_at DESC, id DESC);
CREATE INDEX tasks_by_status_created ON tasks(status, created_at DESC, id DESC);

CREATE TABLE executions (
    id           TEXT PRIMARY KEY,
    task_id      TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    command      TEXT NOT NULL,
    workdir      TEXT,
    user         TEXT,
    explanation  TEXT,
    status       TEXT NOT NULL,
    exit_code    INTEGER,
    timed_out    INTEGER NOT NULL DEFAULT 0,
    stdout_bytes INTEGER NOT NULL DEFAULT 0,
    stderr_bytes INTEGER NOT NULL DEFAULT 0,
    truncated    INTEGER NOT NULL DEFAULT 0,
    started_at   TEXT NOT NULL,
    finished_at  TEXT,
    duration_ms  INTEGER
);
CREATE INDEX executions_by_task ON executions(task_id, started_at DESC);
CREATE INDEX executions_by_started ON executions(started_at);

CREATE TABLE attachments (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id     TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    agent       TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    attached_at TEXT NOT NULL,
    detached_at TEXT
);
CREATE INDEX attachments_by_task ON attachments(task_id, detached_at);

-- Index of tasks/<id>/events.jsonl (the file is the source of truth).
CREATE TABLE events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id   TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    type      TEXT NOT NULL,
    at        TEXT NOT NULL,
    data_json TEXT NOT NULL DEFAULT 'null'
);
CREATE INDEX events_by_task ON events(task_id, id);
CREATE INDEX events_by_type ON events(task_id, type, at);

CREATE TABLE decisions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id    TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    decision   TEXT NOT NULL,
    rationale  TEXT,
    agent      TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX decisions_by_task ON decisions(task_id, created_at DESC);

CREATE TABLE checkpoints (
    id         TEXT PRIMARY KEY,
    task_id    TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    label      TEXT,
    automatic  INTEGER NOT NULL DEFAULT 0,
    git_commit TEXT,
    image_id   TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (task_id, seq)
);

-- taskbox registry, migration 012 (applied after 014): the warm pool (docs/architecture.md,
-- "The warm pool"). Each row is one prepared entry: a started container of `image` (and its
-- task network, for a networked mode) and an empty workspace directory, made under the id the
-- task that claims it will have. `spec` says what it holds (image id, limits, network mode,
-- runtime, ...): a creation claims only an entry whose spec is its own. A claim deletes the
-- row in the transaction that inserts the task's row, so two servers on one data directory
-- never claim the same entry. `filling` rows name the server making them (`server_id`, its
-- lease): one whose server is gone is an orphan, removed with what it made.

CREATE TABLE pool_entries (
    id TEXT PRIMARY KEY,
    image TEXT NOT NULL,
    spec TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('filling', 'ready')),
    server_id TEXT NOT NULL,
    container_id TEXT,
    network_name TEXT,
    shell TEXT,
    exec_user TEXT,
    created_at TEXT NOT NULL
);

CREATE INDEX pool_entries_by_spec ON pool_entries (spec, state, created_at);

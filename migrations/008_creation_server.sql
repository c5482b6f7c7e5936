-- taskbox registry, schema 8: the server creating a task (docs/architecture.md, "Write order
-- and repair"). A `creating` row whose server holds no lease any more was left by a dead
-- server and is reaped at once, not only once its heartbeat is two minutes old.

ALTER TABLE tasks ADD COLUMN creating_server TEXT;

-- taskbox registry, schema 7: background executions (execute_in_task with background: true).
-- They run detached under their supervisor, so a `running` row may outlive every server; the
-- flag keeps startup reconciliation from taking such a row for a foreground execution whose
-- server died, and lets the server find the executions whose status files to read.

ALTER TABLE executions ADD COLUMN background INTEGER NOT NULL DEFAULT 0;
CREATE INDEX executions_running_background ON executions (task_id) WHERE status = 'running' AND background = 1;

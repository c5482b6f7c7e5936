-- taskbox registry, schema 6: what crash recovery needs (docs/architecture.md, "Write order
-- and repair").
--
-- executions.server_id: the server process that runs a foreground execution. A row still
-- `running` whose server holds no lease any more (`servers/<id>.lock`) was left by a dead
-- server and is resolved as `interrupted` at the next start or when its container comes back.
-- tasks.heartbeat_at: refreshed while a task is being created, so another server reaps only
-- creations whose server stopped refreshing it, not slow ones.
-- `interrupted` counts as a failed execution in the statistics aggregates (004), so their
-- triggers are made again with it.

ALTER TABLE executions ADD COLUMN server_id TEXT;
ALTER TABLE tasks ADD COLUMN heartbeat_at TEXT;
CREATE INDEX executions_running ON executions(status) WHERE status = 'running';

DROP TRIGGER exec_aggregates_insert;
DROP TRIGGER exec_aggregates_update;
DROP TRIGGER exec_aggregates_delete;

CREATE TRIGGER exec_aggregates_insert AFTER INSERT ON executions BEGIN
    UPDATE exec_totals SET total = total + 1,
        failed = failed + (new.status IN ('timed_out', 'cancelled', 'failed', 'interrupted') OR (new.status = 'finished' AND COALESCE(new.exit_code, 0) != 0))
    WHERE id = 1;
    INSERT INTO exec_durations (ms, n) SELECT new.duration_ms, 1 WHERE new.duration_ms IS NOT NULL
        ON CONFLICT (ms) DO UPDATE SET n = n + 1;
    INSERT INTO exec_commands (command, n) VALUES (new.command, 1)
        ON CONFLICT (command) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER exec_aggregates_update AFTER UPDATE OF status, exit_code, duration_ms ON executions BEGIN
    UPDATE exec_totals SET failed = failed
        - (old.status IN ('timed_out', 'cancelled', 'failed', 'interrupted') OR (old.status = 'finished' AND COALESCE(old.exit_code, 0) != 0))
        + (new.status IN ('timed_out', 'cancelled', 'failed', 'interrupted') OR (new.status = 'finished' AND COALESCE(new.exit_code, 0) != 0))
    WHERE id = 1;
    UPDATE exec_durations SET n = n - 1 WHERE old.duration_ms IS NOT NULL AND ms = old.duration_ms;
    INSERT INTO exec_durations (ms, n) SELECT new.duration_ms, 1 WHERE new.duration_ms IS NOT NULL
        ON CONFLICT (ms) DO UPDATE SET n = n + 1;
    DELETE FROM exec_durations WHERE old.duration_ms IS NOT NULL AND ms = old.duration_ms AND n <= 0;
END;

CREATE TRIGGER exec_aggregates_delete AFTER DELETE ON executions BEGIN
    UPDATE exec_totals SET total = total - 1,
        failed = failed - (old.status IN ('timed_out', 'cancelled', 'failed', 'interrupted') OR (old.status = 'finished' AND COALESCE(old.exit_code, 0) != 0))
    WHERE id = 1;
    UPDATE exec_durations SET n = n - 1 WHERE old.duration_ms IS NOT NULL AND ms = old.duration_ms;
    DELETE FROM exec_durations WHERE old.duration_ms IS NOT NULL AND ms = old.duration_ms AND n <= 0;
    UPDATE exec_commands SET n = n - 1 WHERE command = old.command;
    DELETE FROM exec_commands WHERE command = old.command AND n <= 0;
END;

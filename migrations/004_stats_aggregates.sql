-- taskbox registry, schema 4: aggregates behind overall task_stats, kept current by triggers,
-- so statistics over millions of executions read a few small tables instead of scanning.

CREATE TABLE exec_totals (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    total  INTEGER NOT NULL,
    failed INTEGER NOT NULL
);
INSERT INTO exec_totals (id, total, failed)
SELECT 1, COUNT(*), COALESCE(SUM(status IN ('timed_out', 'cancelled', 'failed') OR (status = 'finished' AND COALESCE(exit_code, 0) != 0)), 0)
FROM executions;

-- How many executions took each duration (ms): percentiles walk this in order.
CREATE TABLE exec_durations (ms INTEGER PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO exec_durations (ms, n)
SELECT duration_ms, COUNT(*) FROM executions WHERE duration_ms IS NOT NULL GROUP BY duration_ms;

CREATE TABLE exec_commands (command TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO exec_commands (command, n) SELECT command, COUNT(*) FROM executions GROUP BY command;
CREATE INDEX exec_commands_by_n ON exec_commands(n DESC);

CREATE TRIGGER exec_aggregates_insert AFTER INSERT ON executions BEGIN
    UPDATE exec_totals SET total = total + 1,
        failed = failed + (new.status IN ('timed_out', 'cancelled', 'failed') OR (new.status = 'finished' AND COALESCE(new.exit_code, 0) != 0))
    WHERE id = 1;
    INSERT INTO exec_durations (ms, n) SELECT new.duration_ms, 1 WHERE new.duration_ms IS NOT NULL
        ON CONFLICT (ms) DO UPDATE SET n = n + 1;
    INSERT INTO exec_commands (command, n) VALUES (new.command, 1)
        ON CONFLICT (command) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER exec_aggregates_update AFTER UPDATE OF status, exit_code, duration_ms ON executions BEGIN
    UPDATE exec_totals SET failed = failed
        - (old.status IN ('timed_out', 'cancelled', 'failed') OR (old.status = 'finished' AND COALESCE(old.exit_code, 0) != 0))
        + (new.status IN ('timed_out', 'cancelled', 'failed') OR (new.status = 'finished' AND COALESCE(new.exit_code, 0) != 0))
    WHERE id = 1;
    UPDATE exec_durations SET n = n - 1 WHERE old.duration_ms IS NOT NULL AND ms = old.duration_ms;
    INSERT INTO exec_durations (ms, n) SELECT new.duration_ms, 1 WHERE new.duration_ms IS NOT NULL
        ON CONFLICT (ms) DO UPDATE SET n = n + 1;
    DELETE FROM exec_durations WHERE old.duration_ms IS NOT NULL AND ms = old.duration_ms AND n <= 0;
END;

CREATE TRIGGER exec_aggregates_delete AFTER DELETE ON executions BEGIN
    UPDATE exec_totals SET total = total - 1,
        failed = failed - (old.status IN ('timed_out', 'cancelled', 'failed') OR (old.status = 'finished' AND COALESCE(old.exit_code, 0) != 0))
    WHERE id = 1;
    UPDATE exec_durations SET n = n - 1 WHERE old.duration_ms IS NOT NULL AND ms = old.duration_ms;
    DELETE FROM exec_durations WHERE old.duration_ms IS NOT NULL AND ms = old.duration_ms AND n <= 0;
    UPDATE exec_commands SET n = n - 1 WHERE command = old.command;
    DELETE FROM exec_commands WHERE command = old.command AND n <= 0;
END;

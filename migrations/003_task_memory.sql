-- taskbox registry, schema 3: full-text search over what people look for across tasks.
-- One FTS5 table per kind of text, each keyed by the rowid of the row it indexes, so keeping
-- them current is a lookup by rowid, never a scan.

CREATE VIRTUAL TABLE search_tasks USING fts5(text, tokenize = 'unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE search_decisions USING fts5(text, tokenize = 'unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE search_commands USING fts5(text, tokenize = 'unicode61 remove_diacritics 2');

INSERT INTO search_tasks (rowid, text) SELECT rowid, name || ' ' || COALESCE(description, '') FROM tasks;
INSERT INTO search_decisions (rowid, text) SELECT id, decision || ' ' || COALESCE(rationale, '') FROM decisions;
INSERT INTO search_commands (rowid, text) SELECT rowid, command FROM executions;

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

CREATE TRIGGER search_decisions_insert AFTER INSERT ON decisions BEGIN
    INSERT INTO search_decisions (rowid, text) VALUES (new.id, new.decision || ' ' || COALESCE(new.rationale, ''));
END;
CREATE TRIGGER search_decisions_delete AFTER DELETE ON decisions BEGIN
    DELETE FROM search_decisions WHERE rowid = old.id;
END;

CREATE TRIGGER search_commands_insert AFTER INSERT ON executions BEGIN
    INSERT INTO search_commands (rowid, text) VALUES (new.rowid, new.command);
END;
CREATE TRIGGER search_commands_delete AFTER DELETE ON executions BEGIN
    DELETE FROM search_commands WHERE rowid = old.rowid;
END;

-- Statistics: durations in order, commands grouped.
CREATE INDEX executions_by_duration ON executions(duration_ms) WHERE duration_ms IS NOT NULL;
CREATE INDEX executions_by_task_duration ON executions(task_id, duration_ms) WHERE duration_ms IS NOT NULL;
CREATE INDEX executions_by_command ON executions(command);

-- taskbox registry, schema 10: the names of the secrets a task's commands get
-- (docs/secrets.md). Names only, as a JSON array: values are never stored; the server resolves
-- them from its config when a command starts.

ALTER TABLE tasks ADD COLUMN secrets_json TEXT NOT NULL DEFAULT '[]';

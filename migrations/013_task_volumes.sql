-- taskbox registry: the named Docker volumes a task's container mounts (the owner's package
-- caches and the task's own `volumes`), as a JSON array of {kind, name, volume, path}; fixed at
-- creation so that restores, forks and recreated containers mount the same ones.

ALTER TABLE tasks ADD COLUMN volumes_json TEXT NOT NULL DEFAULT '[]';

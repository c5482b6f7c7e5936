-- taskbox registry, schema 2: git-backed workspaces and checkpoints.
-- Every task has a "host repository" the server owns the writes to: the developer's repository
-- (repo_private = 0) or a private bare repository under tasks/<id>/repo.git (repo_private = 1).

ALTER TABLE tasks ADD COLUMN repo_path TEXT;
ALTER TABLE tasks ADD COLUMN repo_private INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN branch TEXT;
ALTER TABLE tasks ADD COLUMN base_commit TEXT;
-- The commit the task branch in the host repository was last moved to.
ALTER TABLE tasks ADD COLUMN synced_commit TEXT;
-- The image the current container was created from (a checkpoint image after a restore).
ALTER TABLE tasks ADD COLUMN container_image TEXT;
ALTER TABLE tasks ADD COLUMN forked_from TEXT;

CREATE INDEX checkpoints_by_task ON checkpoints(task_id, seq DESC);

-- taskbox registry: the hosts an `allowlist` task's egress proxy lets through (a JSON array of
-- patterns; NULL for tasks of other network modes). docs/security.md, "Egress".

ALTER TABLE tasks ADD COLUMN allow_json TEXT;

-- taskbox registry, schema 9: ports exposed with expose_port (docs/architecture.md, "Ports").
-- A row outlives its listeners: it is kept while the task is stopped, so resume_task opens the
-- forward again, and a server restarting (or another server on the same data directory)
-- takes over the forwards of running tasks whose server is gone. `server_id` names the lease
-- of the server whose listeners serve the port now (NULL: nobody's, closed); `host_port` and
-- `public_port` are the ports its listeners had, tried again first when they are reopened;
-- `public_host` the host name of the public listener's URL.

CREATE TABLE exposed_ports (
    task_id     TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    port        INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    host_port   INTEGER CHECK (host_port BETWEEN 1 AND 65535),
    public_port INTEGER CHECK (public_port BETWEEN 1 AND 65535),
    public_host TEXT,
    server_id   TEXT,
    exposed_at  TEXT NOT NULL,
    PRIMARY KEY (task_id, port)
);

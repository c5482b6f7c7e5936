-- taskbox registry, schema 14: one-time sign-in codes of the web dashboard (`taskbox ui`, or
-- POST /ui/login-link with a bearer token). Only the SHA-256 of a code is kept; redeeming one
-- deletes its row, so a code signs in once. The server keeps the sessions themselves in memory.

CREATE TABLE ui_logins (
    hash TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    -- The bearer token the code was asked for with: the session ends when it is revoked.
    token_id TEXT,
    expires_at TEXT NOT NULL
);

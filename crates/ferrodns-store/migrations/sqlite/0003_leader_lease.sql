-- The leader lease exists for PostgreSQL's multi-node control plane; an
-- SQLite database has one node, which leads itself. Kept for one schema
-- history across both databases.
CREATE TABLE leader_lease (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    node TEXT NOT NULL,
    term BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- The catalog zone's state, written only by the leader (fenced by its term)
-- or by a single SQLite node: the serial every node publishes the catalog
-- under, and a digest of the member list (zone name and catalog id) that
-- serial stands for. A node publishes the catalog only when the members it
-- reads match the digest, so one serial never means two contents.
CREATE TABLE catalog_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    serial BIGINT NOT NULL,
    digest TEXT NOT NULL,
    term BIGINT NOT NULL,
    written_at BIGINT NOT NULL
);

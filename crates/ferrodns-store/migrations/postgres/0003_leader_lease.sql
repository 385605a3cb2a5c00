-- The leader lease: one row, taken by a node for a term until expires_at
-- (by the database's clock). The term grows at every new leader and fences
-- the leader's actions.
CREATE TABLE leader_lease (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    node TEXT NOT NULL,
    term BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

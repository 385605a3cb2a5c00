-- TSIG keys made through the API. The secret is kept as given: HMAC needs
-- it, so it cannot be hashed; the API never returns it after creation.
CREATE TABLE tsig_keys (
    name TEXT PRIMARY KEY,
    algorithm TEXT NOT NULL,
    secret BLOB NOT NULL,
    created_at BIGINT NOT NULL
);

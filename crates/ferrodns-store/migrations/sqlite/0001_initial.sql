-- Zones. `name` is the lowercase apex with its final dot. `version` counts
-- committed changes (the API's ETag); `serial` is the SOA serial.
CREATE TABLE zones (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    kind TEXT NOT NULL,
    serial BIGINT NOT NULL,
    version BIGINT NOT NULL,
    rrset_count BIGINT NOT NULL,
    catalog_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX zones_by_tenant ON zones (tenant, name);

-- One row per RRset. `owner` is the lowercase absolute name; `rdata` holds
-- each RDATA as a 16-bit length and its wire bytes, sorted.
CREATE TABLE rrsets (
    zone_id BIGINT NOT NULL REFERENCES zones (id) ON DELETE CASCADE,
    owner TEXT NOT NULL,
    rtype BIGINT NOT NULL,
    ttl BIGINT NOT NULL,
    rdata BLOB NOT NULL,
    PRIMARY KEY (zone_id, owner, rtype)
);

-- Every committed change: who, when, what was asked (`summary`, JSON), and
-- the RFC 1995 diff (old SOA and removed records; new SOA and added ones).
CREATE TABLE journal (
    id INTEGER PRIMARY KEY,
    zone_id BIGINT NOT NULL REFERENCES zones (id) ON DELETE CASCADE,
    serial_from BIGINT NOT NULL,
    serial_to BIGINT NOT NULL,
    actor TEXT NOT NULL,
    at BIGINT NOT NULL,
    summary TEXT NOT NULL,
    removed BLOB NOT NULL,
    added BLOB NOT NULL
);
CREATE INDEX journal_by_zone ON journal (zone_id, id);

-- API tokens, stored as the SHA-256 of the secret only.
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    tenant TEXT NOT NULL,
    role TEXT NOT NULL,
    zones TEXT,
    secret_sha256 BLOB NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

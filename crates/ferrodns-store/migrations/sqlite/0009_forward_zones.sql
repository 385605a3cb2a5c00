-- A forward zone (kind 'forward') holds no RRsets: its forwarders, each
-- ADDR or ADDR:PORT, separated by spaces. NULL for every other kind.
ALTER TABLE zones ADD COLUMN forwarders TEXT;

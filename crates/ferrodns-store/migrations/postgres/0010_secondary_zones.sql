-- A secondary zone (kind 'secondary') follows primaries outside ferrodns
-- (BIND, PowerDNS, Knot) by zone transfer: each ADDR or ADDR:PORT,
-- separated by spaces. NULL for every other kind, and once the zone is
-- switched to a primary.
ALTER TABLE zones ADD COLUMN primaries TEXT;

-- Who made each change, beyond the display name in `actor`, which any token
-- may choose: the id of the token that made it and that token's tenant.
-- Entries written before this migration have neither ('').
ALTER TABLE journal ADD COLUMN actor_token TEXT NOT NULL DEFAULT '';
ALTER TABLE journal ADD COLUMN actor_tenant TEXT NOT NULL DEFAULT '';

-- A zone's own response rate limit: responses a second per bucket and the
-- slip, or NULL (both) for the server's (--rrl-rate, --rrl-slip).
ALTER TABLE zones ADD COLUMN rrl_rate INTEGER;
ALTER TABLE zones ADD COLUMN rrl_slip INTEGER;

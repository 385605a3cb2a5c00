-- How many records a journal entry removes and adds together, so that IXFR
-- can weigh the steps against the zone without reading them; NULL for
-- entries written before it was kept.
ALTER TABLE journal ADD COLUMN records INTEGER;

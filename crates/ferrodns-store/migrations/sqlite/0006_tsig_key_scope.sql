-- Which zones a TSIG key made through the API may transfer and NOTIFY:
-- those of one tenant, and only the listed ones (a JSON array of names).
-- NULL in both: every zone, which only the operator may ask for.
ALTER TABLE tsig_keys ADD COLUMN tenant TEXT;
ALTER TABLE tsig_keys ADD COLUMN zones TEXT;

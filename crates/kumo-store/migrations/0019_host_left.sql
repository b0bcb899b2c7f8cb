-- Issue 13: a host whose agent said it was stopping (a clean shutdown) is `down` until its next
-- heartbeat: when it said so.
ALTER TABLE hosts ADD COLUMN time_left TEXT;

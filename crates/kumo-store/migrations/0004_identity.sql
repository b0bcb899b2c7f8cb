-- Identity: user descriptions, one live API token name per user, audit queries by user.
ALTER TABLE users ADD COLUMN description TEXT NOT NULL DEFAULT '';
-- A user's API tokens have unique names among the ones not revoked (expired ones are revoked
-- when a new token takes their name). Sessions all share a name and are not covered.
CREATE UNIQUE INDEX api_tokens_user_name_live ON api_tokens (user_id, name) WHERE time_revoked IS NULL AND kind = 'user';
CREATE INDEX audit_log_user ON audit_log (user_id, time_created);

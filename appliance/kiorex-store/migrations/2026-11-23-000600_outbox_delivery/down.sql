DROP TRIGGER IF EXISTS search_word_add ON search_string;
DROP FUNCTION IF EXISTS search_word_add();
DROP TABLE IF EXISTS search_word;
DROP INDEX IF EXISTS search_token_upper_code;
DROP INDEX IF EXISTS outbox_undelivered_by_resource;
ALTER TABLE outbox DROP COLUMN IF EXISTS last_error, DROP COLUMN IF EXISTS next_attempt_at;

-- Concurrent registrations deadlocked on the name vocabulary: a transaction holds the key lock
-- of every new word it added until it commits, so two transactions adding the same new words in
-- different statements waited for each other. Now a transaction that has a new word to add
-- first takes one transaction-level advisory lock: those few transactions (a word is new only
-- once) queue up instead of deadlocking, and by the time one gets the lock the words of the one
-- before it are committed, so ON CONFLICT finds them without waiting. Transactions that add no
-- new word (nearly all, once the vocabulary has grown) never take the lock.
CREATE OR REPLACE FUNCTION search_word_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM new_rows n
        WHERE n.param IN ('name', 'ingredient', 'form')
          AND NOT EXISTS (
              SELECT 1 FROM search_word w
              WHERE w.resource_type = n.resource_type AND w.param = n.param AND w.value = n.value)
    ) THEN
        PERFORM pg_advisory_xact_lock(hashtext('kiorex.search_word'));
        INSERT INTO search_word (resource_type, param, value)
            SELECT DISTINCT resource_type, param, value FROM new_rows
            WHERE param IN ('name', 'ingredient', 'form')
            ORDER BY resource_type, param, value
            ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END $$;

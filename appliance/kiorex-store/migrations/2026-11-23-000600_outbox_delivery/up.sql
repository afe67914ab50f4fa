-- The worker's delivery of the outbox: a claimed event is leased until next_attempt_at (a worker
-- that dies mid-batch leaves it to be claimed again when the lease runs out); a failed one waits
-- there with its last error (back-off). Only each resource's oldest undelivered event is
-- claimable, which keeps delivery in order per resource.
ALTER TABLE outbox
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN last_error text;
CREATE INDEX outbox_undelivered_by_resource ON outbox (resource_id, id) WHERE delivered_at IS NULL;


-- Front-desk search by identifier compares upper-cased codes (an MRN typed in lower case).
CREATE INDEX search_token_upper_code ON search_token (resource_type, param, upper(code));

-- The vocabulary of names (and formulary words): every distinct word once, with a trigram index.
-- A typo is matched against the few thousand distinct words instead of every patient's name
-- rows, then the patients are read through the B-tree index by the words found. Kept by a
-- statement trigger on search_string; words are never removed (a stale word finds nobody).
CREATE TABLE search_word (
    resource_type  text NOT NULL,
    param          text NOT NULL,
    value          text NOT NULL,
    PRIMARY KEY (resource_type, param, value)
);
CREATE INDEX search_word_trgm ON search_word USING gin (value gin_trgm_ops);
INSERT INTO search_word (resource_type, param, value)
    SELECT DISTINCT resource_type, param, value FROM search_string
    WHERE param IN ('name', 'ingredient', 'form');
CREATE FUNCTION search_word_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO search_word (resource_type, param, value)
        SELECT DISTINCT resource_type, param, value FROM new_rows
        WHERE param IN ('name', 'ingredient', 'form')
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER search_word_add AFTER INSERT ON search_string
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION search_word_add();

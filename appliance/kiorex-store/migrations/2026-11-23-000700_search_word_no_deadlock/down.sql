CREATE OR REPLACE FUNCTION search_word_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO search_word (resource_type, param, value)
        SELECT DISTINCT resource_type, param, value FROM new_rows
        WHERE param IN ('name', 'ingredient', 'form')
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

-- Code systems shipped with Kiorex or loaded from files the hospital provides (ICD-10-CM first).
-- Each loaded source is recorded with its name, version, licence and checksum.
CREATE TABLE code_system (
    id            text PRIMARY KEY,          -- 'icd-10-cm'
    name          text NOT NULL,
    version       text NOT NULL,
    licence       text NOT NULL,
    sha256        text NOT NULL,
    concept_count integer NOT NULL,
    loaded_at     timestamptz NOT NULL
);

CREATE TABLE concept (
    system   text NOT NULL REFERENCES code_system (id) ON DELETE CASCADE,
    code     text NOT NULL,
    display  text NOT NULL,
    billable boolean NOT NULL,
    -- The code without its dot, so that "E119" and "e11.9" find E11.9.
    code_key text GENERATED ALWAYS AS (replace(code, '.', '')) STORED,
    PRIMARY KEY (system, code)
);

-- Search as you type: a code prefix, or words anywhere in the description.
CREATE INDEX concept_code_key_prefix ON concept (system, code_key text_pattern_ops);
CREATE INDEX concept_display_trgm ON concept USING gin (lower(display) gin_trgm_ops);

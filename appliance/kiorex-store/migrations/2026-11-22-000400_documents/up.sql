-- Clinical documents. The content lives in the object store (Ceph RGW), encrypted with a
-- per-object data key; a row is written only once its object is stored and scanned, so every
-- row names an object that exists (an object without a row is an orphan `kiorex objects gc`
-- removes).

-- One document of one patient (a referral, a consent form): its current version, category and
-- soft-delete state. Deleted documents stay until `purge_after`.
CREATE TABLE document (
    id               uuid PRIMARY KEY,
    facility_id      uuid NOT NULL REFERENCES facility (id),
    patient_id       uuid NOT NULL REFERENCES resource (id),
    category         text NOT NULL CHECK (category ~ '^[a-z0-9][a-z0-9-]{0,39}$'),
    title            text NOT NULL,
    current_version  integer NOT NULL CHECK (current_version > 0),
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    deleted_at       timestamptz,
    purge_after      timestamptz
);
CREATE INDEX document_by_patient ON document (patient_id, category, created_at DESC);

-- Every version ever uploaded; new versions keep the old ones.
CREATE TABLE document_version (
    document_id     uuid NOT NULL REFERENCES document (id),
    version         integer NOT NULL CHECK (version > 0),
    object_key      text NOT NULL UNIQUE,
    -- The id of the key-encryption key that wrapped `wrapped_key`, so the KEK can rotate
    -- without rewriting objects.
    key_id          text NOT NULL,
    wrapped_key     bytea NOT NULL,
    sha256          text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes      bigint NOT NULL CHECK (size_bytes > 0),
    content_type    text NOT NULL,
    file_name       text NOT NULL,
    extracted_text  text,
    author          text NOT NULL,
    request_id      text NOT NULL,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (document_id, version)
);

-- Full-text search over the extracted text of current and past versions ('simple': no stemming,
-- so that names and drug names in any language match as typed).
CREATE INDEX document_version_text ON document_version
    USING gin (to_tsvector('simple', coalesce(extracted_text, '')));

-- The spine: facilities, versioned clinical resources with search indexes, the outbox,
-- the hash-chained audit log, local accounts, duplicate review and merges.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE facility (
    id          uuid PRIMARY KEY,
    code        text NOT NULL UNIQUE CHECK (code ~ '^[A-Z0-9]{2,10}$'),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The current version of every clinical resource. Deletes are soft: the row stays, marked.
CREATE TABLE resource (
    id             uuid PRIMARY KEY,
    resource_type  text NOT NULL,
    facility_id    uuid NOT NULL REFERENCES facility (id),
    version_id     integer NOT NULL CHECK (version_id > 0),
    last_updated   timestamptz NOT NULL,
    deleted        boolean NOT NULL DEFAULT false,
    content        jsonb NOT NULL
);
CREATE INDEX resource_type_facility_updated ON resource (resource_type, facility_id, last_updated DESC);

-- Every version ever written, the current one included: FHIR _history, undo of merges, audit.
CREATE TABLE resource_version (
    id             uuid NOT NULL,
    version_id     integer NOT NULL,
    resource_type  text NOT NULL,
    facility_id    uuid NOT NULL,
    last_updated   timestamptz NOT NULL,
    deleted        boolean NOT NULL,
    content        jsonb NOT NULL,
    change         text NOT NULL CHECK (change IN ('create', 'update', 'delete', 'merge', 'unmerge')),
    author         text NOT NULL,
    request_id     text NOT NULL,
    PRIMARY KEY (id, version_id)
);
CREATE INDEX resource_version_type_updated ON resource_version (resource_type, last_updated DESC);

-- Search indexes of current, non-deleted versions (one row per indexed value).
CREATE TABLE search_string (
    resource_id    uuid NOT NULL REFERENCES resource (id),
    resource_type  text NOT NULL,
    param          text NOT NULL,
    value          text NOT NULL   -- folded: lower case, accents removed
);
CREATE INDEX search_string_prefix ON search_string (resource_type, param, value text_pattern_ops) INCLUDE (resource_id);
CREATE INDEX search_string_resource ON search_string (resource_id);
CREATE INDEX search_string_trgm ON search_string USING gin (value gin_trgm_ops);

CREATE TABLE search_token (
    resource_id    uuid NOT NULL REFERENCES resource (id),
    resource_type  text NOT NULL,
    param          text NOT NULL,
    system         text NOT NULL DEFAULT '',
    code           text NOT NULL
);
CREATE INDEX search_token_code ON search_token (resource_type, param, code, system);
CREATE INDEX search_token_resource ON search_token (resource_id);

CREATE TABLE search_date (
    resource_id    uuid NOT NULL REFERENCES resource (id),
    resource_type  text NOT NULL,
    param          text NOT NULL,
    low            timestamptz NOT NULL,
    high           timestamptz NOT NULL
);
CREATE INDEX search_date_range ON search_date (resource_type, param, low, high);
CREATE INDEX search_date_resource ON search_date (resource_id);

CREATE TABLE search_reference (
    resource_id    uuid NOT NULL REFERENCES resource (id),
    resource_type  text NOT NULL,
    param          text NOT NULL,
    target_type    text NOT NULL,
    target_id      uuid NOT NULL
);
CREATE INDEX search_reference_target ON search_reference (target_id, resource_type, param);
CREATE INDEX search_reference_resource ON search_reference (resource_id);

-- Transactional outbox: written in the same transaction as the change, delivered by the worker.
CREATE TABLE outbox (
    id             bigserial PRIMARY KEY,
    facility_id    uuid NOT NULL,
    topic          text NOT NULL,
    resource_type  text NOT NULL,
    resource_id    uuid NOT NULL,
    version_id     integer NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    delivered_at   timestamptz,
    attempts       integer NOT NULL DEFAULT 0
);
CREATE INDEX outbox_undelivered ON outbox (id) WHERE delivered_at IS NULL;

-- Hash-chained audit log. Rows are only ever appended; the trigger refuses changes, and the
-- chain catches anyone (a DBA included) who gets around the trigger.
CREATE TABLE audit_log (
    seq            bigint PRIMARY KEY,
    recorded_at    timestamptz NOT NULL,
    actor          text NOT NULL,
    action         text NOT NULL,
    outcome        text NOT NULL,
    resource_type  text NOT NULL,
    resource_id    text NOT NULL,
    patient_id     text NOT NULL,
    facility_id    text NOT NULL,
    request_id     text NOT NULL,
    detail         text NOT NULL,
    prev_hash      text NOT NULL,
    hash           text NOT NULL
);
CREATE INDEX audit_log_patient ON audit_log (patient_id, recorded_at) WHERE patient_id <> '';
CREATE INDEX audit_log_actor ON audit_log (actor, recorded_at);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (KX-AUD-001)';
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Local accounts (break-glass administrators, sites without a directory) and their grants.
CREATE TABLE user_account (
    id             uuid PRIMARY KEY,
    username       text NOT NULL UNIQUE,
    display_name   text NOT NULL,
    password_hash  text,
    disabled       boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE role_grant (
    user_id        uuid NOT NULL REFERENCES user_account (id) ON DELETE CASCADE,
    facility_id    uuid NOT NULL REFERENCES facility (id),
    role           text NOT NULL,
    PRIMARY KEY (user_id, facility_id, role)
);

-- Possible duplicates accepted from partner systems, waiting for a registrar's decision.
CREATE TABLE duplicate_review (
    id             uuid PRIMARY KEY,
    facility_id    uuid NOT NULL REFERENCES facility (id),
    patient_id     uuid NOT NULL REFERENCES resource (id),
    candidate_id   uuid NOT NULL REFERENCES resource (id),
    score          double precision NOT NULL,
    reasons        jsonb NOT NULL,
    status         text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'merged', 'dismissed')),
    created_at     timestamptz NOT NULL,
    resolved_at    timestamptz,
    resolved_by    text,
    UNIQUE (patient_id, candidate_id)
);
CREATE INDEX duplicate_review_open ON duplicate_review (facility_id, created_at) WHERE status = 'open';

-- Merges of two patient records: what changed, so that a merge can be undone from history.
CREATE TABLE patient_merge (
    id             uuid PRIMARY KEY,
    facility_id    uuid NOT NULL REFERENCES facility (id),
    survivor_id    uuid NOT NULL REFERENCES resource (id),
    loser_id       uuid NOT NULL REFERENCES resource (id),
    merged_at      timestamptz NOT NULL,
    merged_by      text NOT NULL,
    request_id     text NOT NULL,
    changes        jsonb NOT NULL,   -- [{"id": uuid, "before": version, "after": version}]
    undone_at      timestamptz,
    undone_by      text
);

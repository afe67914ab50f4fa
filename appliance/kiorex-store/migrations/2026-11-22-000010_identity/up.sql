-- Identity federation, sessions, API clients, care relationships and break-the-glass.

-- Where an account comes from: a local break-glass account, the directory, or the IdP.
ALTER TABLE user_account
    ADD COLUMN source          text NOT NULL DEFAULT 'local'
        CHECK (source IN ('local', 'ldap', 'oidc', 'client')),
    ADD COLUMN email           text,
    ADD COLUMN practitioner_id uuid REFERENCES resource (id),
    ADD COLUMN totp_secret     text,
    ADD COLUMN totp_enabled    boolean NOT NULL DEFAULT false,
    ADD COLUMN last_sign_in_at timestamptz;

-- One-time recovery codes for a lost authenticator, stored as SHA-256 (they are random).
CREATE TABLE recovery_code (
    user_id   uuid NOT NULL REFERENCES user_account (id) ON DELETE CASCADE,
    code_hash bytea NOT NULL,
    used_at   timestamptz,
    PRIMARY KEY (user_id, code_hash)
);

-- Consecutive failed sign-ins per account (`user:<name>`) and per source address (`addr:<ip>`).
CREATE TABLE sign_in_failure (
    subject         text PRIMARY KEY,
    failures        integer NOT NULL,
    last_failure_at timestamptz NOT NULL,
    locked_until    timestamptz
);

-- Browser sessions. The cookie holds a random token; only its SHA-256 is stored.
CREATE TABLE user_session (
    id             uuid PRIMARY KEY,
    token_hash     bytea NOT NULL UNIQUE,
    user_id        uuid NOT NULL REFERENCES user_account (id) ON DELETE CASCADE,
    csrf_token     text NOT NULL,
    method         text NOT NULL,
    grants         jsonb NOT NULL,
    id_token       text,
    source_address text NOT NULL DEFAULT '',
    user_agent     text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL,
    last_seen_at   timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz
);
CREATE INDEX user_session_active ON user_session (user_id) WHERE revoked_at IS NULL;

-- An OpenID Connect sign-in in flight: what the callback must find again.
CREATE TABLE oidc_login (
    state         text PRIMARY KEY,
    nonce         text NOT NULL,
    pkce_verifier text NOT NULL,
    return_to     text NOT NULL DEFAULT '/',
    created_at    timestamptz NOT NULL
);

-- Directory group → role at a facility. Read at every directory sign-in.
CREATE TABLE group_role (
    group_name  text NOT NULL,
    facility_id uuid NOT NULL REFERENCES facility (id),
    role        text NOT NULL,
    PRIMARY KEY (group_name, facility_id, role)
);

-- Systems that call Kiorex with the client-credentials grant (lab systems, the national hub).
-- Each has an account row (source 'client') for its grants and for the audit trail.
CREATE TABLE api_client (
    client_id   text PRIMARY KEY,
    user_id     uuid NOT NULL UNIQUE REFERENCES user_account (id) ON DELETE CASCADE,
    secret_hash text NOT NULL,
    scopes      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A clinician's assignment to a patient (ward list, care team), in force between two times.
CREATE TABLE care_assignment (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES user_account (id) ON DELETE CASCADE,
    patient_id  uuid NOT NULL REFERENCES resource (id),
    facility_id uuid NOT NULL REFERENCES facility (id),
    reason      text NOT NULL,
    valid_from  timestamptz NOT NULL,
    valid_until timestamptz,
    created_by  text NOT NULL
);
CREATE INDEX care_assignment_user_patient ON care_assignment (user_id, patient_id);

-- Emergency access outside a care relationship: one patient, for a limited time, with a reason,
-- reviewed afterwards by the privacy officer.
CREATE TABLE break_glass (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES user_account (id),
    username      text NOT NULL,
    patient_id    uuid NOT NULL REFERENCES resource (id),
    facility_id   uuid NOT NULL REFERENCES facility (id),
    reason        text NOT NULL,
    granted_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    review_status text NOT NULL DEFAULT 'pending'
        CHECK (review_status IN ('pending', 'approved', 'flagged')),
    reviewed_by   text,
    reviewed_at   timestamptz,
    review_note   text
);
CREATE INDEX break_glass_user_patient ON break_glass (user_id, patient_id, expires_at);
CREATE INDEX break_glass_pending ON break_glass (granted_at) WHERE review_status = 'pending';

-- Audit review searches by time (by patient and by actor are indexed already).
CREATE INDEX audit_log_recorded ON audit_log (recorded_at);

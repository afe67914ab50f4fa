-- Uploads held while the virus scanner was unreachable (`scan.hold_when_unavailable = true`).
-- The file is sealed and kept in the quarantine bucket; it is part of no patient's record until
-- `kiorex objects rescan` finds it clean, moves it into the documents bucket and writes the
-- document rows then. A hold row is written only after its object is stored.
CREATE TABLE document_hold (
    id                uuid PRIMARY KEY,
    facility_id       uuid NOT NULL REFERENCES facility (id),
    patient_id        uuid NOT NULL REFERENCES resource (id),
    -- The document this upload would add a version to; NULL for a new document.
    document_id       uuid REFERENCES document (id),
    quarantine_key    text NOT NULL UNIQUE,
    -- The data key that sealed the held file, wrapped by the key-encryption key `key_id`.
    key_id            text NOT NULL,
    wrapped_key       bytea NOT NULL,
    -- What the uploader sent: category, title, file name, type, size, SHA-256, author and request.
    upload            jsonb NOT NULL,
    -- pending: not scanned yet; accepted: clean and in the record; infected: kept quarantined;
    -- rejected: could not be accepted (the document was deleted meanwhile, the object expired).
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'accepted', 'infected', 'rejected')),
    detail            text NOT NULL DEFAULT '',
    accepted_document uuid REFERENCES document (id),
    accepted_version  integer,
    -- A rescan leases a hold while it works on it, so that two rescans never take the same one.
    claimed_until     timestamptz,
    created_at        timestamptz NOT NULL,
    decided_at        timestamptz
);
CREATE INDEX document_hold_pending ON document_hold (created_at) WHERE status = 'pending';

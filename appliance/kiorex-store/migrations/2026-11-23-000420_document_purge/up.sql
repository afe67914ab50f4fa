-- The purge of soft-deleted documents after the retention period (`kiorex objects purge`): every
-- object version is removed from the object store, then the rows stay as a tombstone (which
-- document of which patient, when deleted, when purged and by whom) with their content-bearing
-- fields emptied: title, file names, extracted text and the wrapped data keys.
ALTER TABLE document
    ADD COLUMN purged_at timestamptz,
    ADD COLUMN purged_by text,
    ADD CONSTRAINT document_purged_only_when_deleted CHECK (purged_at IS NULL OR deleted_at IS NOT NULL);
CREATE INDEX document_purge_due ON document (deleted_at) WHERE deleted_at IS NOT NULL AND purged_at IS NULL;

DROP INDEX document_purge_due;
ALTER TABLE document
    DROP CONSTRAINT document_purged_only_when_deleted,
    DROP COLUMN purged_by,
    DROP COLUMN purged_at;

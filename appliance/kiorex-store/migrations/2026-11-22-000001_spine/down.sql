DROP TABLE patient_merge, duplicate_review, role_grant, user_account, audit_log, outbox,
    search_reference, search_date, search_token, search_string, resource_version, resource, facility;
DROP FUNCTION audit_log_append_only();

DROP INDEX IF EXISTS audit_log_recorded;
DROP TABLE IF EXISTS break_glass;
DROP TABLE IF EXISTS care_assignment;
DROP TABLE IF EXISTS api_client;
DROP TABLE IF EXISTS group_role;
DROP TABLE IF EXISTS oidc_login;
DROP TABLE IF EXISTS user_session;
DROP TABLE IF EXISTS sign_in_failure;
DROP TABLE IF EXISTS recovery_code;
ALTER TABLE user_account
    DROP COLUMN IF EXISTS source, DROP COLUMN IF EXISTS email, DROP COLUMN IF EXISTS practitioner_id,
    DROP COLUMN IF EXISTS totp_secret, DROP COLUMN IF EXISTS totp_enabled, DROP COLUMN IF EXISTS last_sign_in_at;

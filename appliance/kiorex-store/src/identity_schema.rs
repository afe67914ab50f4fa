//! Tables of the identity migration (sessions, lockout, API clients, care, break-the-glass).

diesel::table! {
    recovery_code (user_id, code_hash) {
        user_id -> Uuid,
        code_hash -> Bytea,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    sign_in_failure (subject) {
        subject -> Text,
        failures -> Int4,
        last_failure_at -> Timestamptz,
        locked_until -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    user_session (id) {
        id -> Uuid,
        token_hash -> Bytea,
        user_id -> Uuid,
        csrf_token -> Text,
        method -> Text,
        grants -> Jsonb,
        id_token -> Nullable<Text>,
        source_address -> Text,
        user_agent -> Text,
        created_at -> Timestamptz,
        last_seen_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    oidc_login (state) {
        state -> Text,
        nonce -> Text,
        pkce_verifier -> Text,
        return_to -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    group_role (group_name, facility_id, role) {
        group_name -> Text,
        facility_id -> Uuid,
        role -> Text,
    }
}

diesel::table! {
    api_client (client_id) {
        client_id -> Text,
        user_id -> Uuid,
        secret_hash -> Text,
        scopes -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    care_assignment (id) {
        id -> Uuid,
        user_id -> Uuid,
        patient_id -> Uuid,
        facility_id -> Uuid,
        reason -> Text,
        valid_from -> Timestamptz,
        valid_until -> Nullable<Timestamptz>,
        created_by -> Text,
    }
}

diesel::table! {
    break_glass (id) {
        id -> Uuid,
        user_id -> Uuid,
        username -> Text,
        patient_id -> Uuid,
        facility_id -> Uuid,
        reason -> Text,
        granted_at -> Timestamptz,
        expires_at -> Timestamptz,
        review_status -> Text,
        reviewed_by -> Nullable<Text>,
        reviewed_at -> Nullable<Timestamptz>,
        review_note -> Nullable<Text>,
    }
}

use crate::schema::user_account;
diesel::allow_tables_to_appear_in_same_query!(user_session, user_account);
diesel::allow_tables_to_appear_in_same_query!(api_client, user_account);

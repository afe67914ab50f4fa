//! Diesel table definitions, written to match `migrations/`.

diesel::table! {
    facility (id) {
        id -> Uuid,
        code -> Text,
        name -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    resource (id) {
        id -> Uuid,
        resource_type -> Text,
        facility_id -> Uuid,
        version_id -> Int4,
        last_updated -> Timestamptz,
        deleted -> Bool,
        content -> Jsonb,
    }
}

diesel::table! {
    resource_version (id, version_id) {
        id -> Uuid,
        version_id -> Int4,
        resource_type -> Text,
        facility_id -> Uuid,
        last_updated -> Timestamptz,
        deleted -> Bool,
        content -> Jsonb,
        change -> Text,
        author -> Text,
        request_id -> Text,
    }
}

diesel::table! {
    search_string (resource_id, param, value) {
        resource_id -> Uuid,
        resource_type -> Text,
        param -> Text,
        value -> Text,
    }
}

diesel::table! {
    search_token (resource_id, param, system, code) {
        resource_id -> Uuid,
        resource_type -> Text,
        param -> Text,
        system -> Text,
        code -> Text,
    }
}

diesel::table! {
    search_date (resource_id, param, low, high) {
        resource_id -> Uuid,
        resource_type -> Text,
        param -> Text,
        low -> Timestamptz,
        high -> Timestamptz,
    }
}

diesel::table! {
    search_reference (resource_id, param, target_id) {
        resource_id -> Uuid,
        resource_type -> Text,
        param -> Text,
        target_type -> Text,
        target_id -> Uuid,
    }
}

diesel::table! {
    chart_result (resource_id) {
        resource_id -> Uuid,
        patient_id -> Uuid,
        facility_id -> Uuid,
        code -> Text,
        display -> Text,
        value -> Nullable<Float8>,
        unit -> Text,
        effective_at -> Nullable<Timestamptz>,
        flag -> Text,
        vital -> Bool,
    }
}

diesel::table! {
    outbox (id) {
        id -> Int8,
        facility_id -> Uuid,
        topic -> Text,
        resource_type -> Text,
        resource_id -> Uuid,
        version_id -> Int4,
        created_at -> Timestamptz,
        delivered_at -> Nullable<Timestamptz>,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    audit_log (seq) {
        seq -> Int8,
        recorded_at -> Timestamptz,
        actor -> Text,
        action -> Text,
        outcome -> Text,
        resource_type -> Text,
        resource_id -> Text,
        patient_id -> Text,
        facility_id -> Text,
        request_id -> Text,
        detail -> Text,
        prev_hash -> Text,
        hash -> Text,
    }
}

diesel::table! {
    user_account (id) {
        id -> Uuid,
        username -> Text,
        display_name -> Text,
        password_hash -> Nullable<Text>,
        disabled -> Bool,
        created_at -> Timestamptz,
        source -> Text,
        email -> Nullable<Text>,
        practitioner_id -> Nullable<Uuid>,
        totp_secret -> Nullable<Text>,
        totp_enabled -> Bool,
        last_sign_in_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    role_grant (user_id, facility_id, role) {
        user_id -> Uuid,
        facility_id -> Uuid,
        role -> Text,
    }
}

diesel::table! {
    duplicate_review (id) {
        id -> Uuid,
        facility_id -> Uuid,
        patient_id -> Uuid,
        candidate_id -> Uuid,
        score -> Float8,
        reasons -> Jsonb,
        status -> Text,
        created_at -> Timestamptz,
        resolved_at -> Nullable<Timestamptz>,
        resolved_by -> Nullable<Text>,
    }
}

diesel::table! {
    patient_merge (id) {
        id -> Uuid,
        facility_id -> Uuid,
        survivor_id -> Uuid,
        loser_id -> Uuid,
        merged_at -> Timestamptz,
        merged_by -> Text,
        request_id -> Text,
        changes -> Jsonb,
        undone_at -> Nullable<Timestamptz>,
        undone_by -> Nullable<Text>,
    }
}

diesel::joinable!(role_grant -> user_account (user_id));
diesel::allow_tables_to_appear_in_same_query!(
    facility,
    resource,
    resource_version,
    search_string,
    search_token,
    search_date,
    search_reference,
    chart_result,
    role_grant,
    user_account,
);

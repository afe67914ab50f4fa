-- Half-filled portal forms, kept per person so that work survives a timeout and a new sign-in.
CREATE TABLE form_draft (
    user_id    uuid NOT NULL REFERENCES user_account (id) ON DELETE CASCADE,
    form_key   text NOT NULL,
    content    jsonb NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, form_key)
);

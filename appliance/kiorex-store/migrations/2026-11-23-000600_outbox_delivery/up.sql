-- The worker's delivery of the outbox: a claimed event is leased until next_attempt_at (a worker
-- that dies mid-batch leaves it to be claimed again when the lease runs out); a failed one waits
-- there with its last error (back-off). Only each resource's oldest undelivered event is
-- claimable, which keeps delivery in order per resource.
ALTER TABLE outbox
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN last_error text;
CREATE INDEX outbox_undelivered_by_resource ON outbox (resource_id, id) WHERE delivered_at IS NULL;


-- Front-desk search by identifier compares upper-cased codes (an MRN typed in lower case).
CREATE INDEX search_token_upper_code ON search_token (resource_type, param, upper(code));

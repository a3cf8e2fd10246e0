-- Authentication and ownership (issue 27).

-- user service: an Argon2id hash (PHC string); empty for a user registered
-- before passwords existed, who cannot log in.
ALTER TABLE users ADD COLUMN password_hash TEXT NOT NULL DEFAULT '';

-- order service: the card token of a pending order, kept here (not in the
-- charge job's payload, which the queue may keep after a failure) and
-- deleted once the order is settled.
CREATE TABLE order_payment_tokens (
    order_id  TEXT PRIMARY KEY,
    token     TEXT NOT NULL
);

-- notification service: whose notification it is (a user reads only theirs).
ALTER TABLE notifications ADD COLUMN user_id TEXT NOT NULL DEFAULT '';
CREATE INDEX notifications_by_user ON notifications (user_id, order_id);

-- The platform's tables. The same SQL runs on SQLite and PostgreSQL: TEXT
-- ids made by the services, money as BIGINT minor units, times as BIGINT ms.
-- Each service reads and writes only its own tables.

-- user service
CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    email       TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    created_ms  BIGINT NOT NULL
);

-- product service
CREATE TABLE products (
    sku          TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL,
    price_minor  BIGINT NOT NULL CHECK (price_minor >= 0),
    currency     TEXT NOT NULL,
    stock        BIGINT NOT NULL CHECK (stock >= 0)
);
CREATE TABLE reservations (
    order_id  TEXT NOT NULL,
    sku       TEXT NOT NULL,
    quantity  BIGINT NOT NULL,
    PRIMARY KEY (order_id, sku)
);

-- order service
CREATE TABLE orders (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    status       TEXT NOT NULL,
    lines        TEXT NOT NULL,
    total_minor  BIGINT NOT NULL,
    currency     TEXT NOT NULL,
    payment_id   TEXT,
    failure      TEXT,
    created_ms   BIGINT NOT NULL,
    updated_ms   BIGINT NOT NULL
);
CREATE INDEX orders_by_user ON orders (user_id, created_ms);

-- payment service
CREATE TABLE payments (
    id            TEXT PRIMARY KEY,
    order_id      TEXT NOT NULL UNIQUE,
    amount_minor  BIGINT NOT NULL,
    currency      TEXT NOT NULL,
    status        TEXT NOT NULL,
    reason        TEXT,
    created_ms    BIGINT NOT NULL
);

-- notification service
CREATE TABLE notifications (
    order_id   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    recipient  TEXT NOT NULL,
    body       TEXT NOT NULL,
    sent_ms    BIGINT NOT NULL,
    PRIMARY KEY (order_id, kind)
);

CREATE TABLE products (
    sku TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    price_minor BIGINT NOT NULL,
    stock BIGINT NOT NULL DEFAULT 0
);

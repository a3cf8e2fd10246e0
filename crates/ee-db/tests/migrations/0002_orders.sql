CREATE TABLE orders (
    id BIGINT PRIMARY KEY,
    sku TEXT NOT NULL REFERENCES products (sku),
    qty BIGINT NOT NULL
);
INSERT INTO products (sku, name, price_minor, stock) VALUES ('A-1', 'Anvil', 1999, 10);

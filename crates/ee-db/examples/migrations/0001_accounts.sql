CREATE TABLE accounts (
    id BIGINT PRIMARY KEY,
    owner TEXT NOT NULL,
    balance_minor BIGINT NOT NULL CHECK (balance_minor >= 0)
);
INSERT INTO accounts (id, owner, balance_minor) VALUES (1, 'ada', 10000), (2, 'grace', 5000);

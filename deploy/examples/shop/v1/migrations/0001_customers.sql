-- The application's schema v1: one row per customer.
CREATE TABLE customers (
    id      text PRIMARY KEY,
    name    text,
    email   text,
    changes bigint NOT NULL DEFAULT 0
);

-- The application's schema v2: customers are clients, and their email lives
-- in a table of its own.
CREATE TABLE clients (
    client_id    text PRIMARY KEY,
    display_name text,
    changes      bigint NOT NULL DEFAULT 0
);

CREATE TABLE client_emails (
    client_id text PRIMARY KEY REFERENCES clients (client_id),
    email     text NOT NULL
);

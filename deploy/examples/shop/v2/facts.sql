-- The canonical facts of schema v2, in v1's shape (see v1/facts.sql).
SELECT c.client_id AS customer, c.display_name AS name, e.email, c.changes
FROM clients c LEFT JOIN client_emails e USING (client_id)

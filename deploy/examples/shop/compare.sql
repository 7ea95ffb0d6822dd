-- Run on B with A's customers copied in as a_customers(id, name, email,
-- changes): the rows where the two schemas disagree. Empty when they hold
-- the same facts.
SELECT coalesce(a.id, c.client_id) AS customer, a.name, c.display_name, a.email, e.email AS b_email, a.changes, c.changes AS b_changes
FROM a_customers a
FULL JOIN clients c ON c.client_id = a.id
LEFT JOIN client_emails e ON e.client_id = c.client_id
WHERE a.name IS DISTINCT FROM c.display_name OR a.email IS DISTINCT FROM e.email OR a.changes IS DISTINCT FROM c.changes

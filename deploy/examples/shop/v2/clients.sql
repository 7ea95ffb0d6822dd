-- Every event about a client counts as a change; a rename sets the name, a
-- name carried as null clears it, and an event without one keeps it (see
-- v1/customers.sql for why absent and null must differ).
WITH news AS (
    SELECT subject AS client_id,
           bool_or(data ? 'name') AS has_name,
           (array_agg(data->>'name' ORDER BY kafka_offset DESC) FILTER (WHERE data ? 'name'))[1] AS display_name,
           count(*) AS changes
    FROM batch
    GROUP BY subject
), updated AS (
    UPDATE clients c SET
        display_name = CASE WHEN n.has_name THEN n.display_name ELSE c.display_name END,
        changes      = c.changes + n.changes
    FROM news n
    WHERE c.client_id = n.client_id
    RETURNING c.client_id
)
INSERT INTO clients (client_id, display_name, changes)
SELECT client_id, display_name, changes FROM news
WHERE client_id NOT IN (SELECT client_id FROM updated)

-- One row per customer (the subject). Events about one customer share a
-- partition, so they arrive in log order. Within a batch the latest value of
-- each field by offset wins. A field an event does not carry keeps its
-- value; a field it carries as null is cleared. The two must not be
-- conflated (coalesce(EXCLUDED.x, c.x) would): the result would then depend
-- on whether a null arrived in the same batch as an earlier value or in a
-- later one. So the batch's news per customer says, per field, whether any
-- event carried it (has_*), and the update takes the field only then.
WITH news AS (
    SELECT subject AS id,
           bool_or(data ? 'name') AS has_name,
           (array_agg(data->>'name' ORDER BY kafka_offset DESC) FILTER (WHERE data ? 'name'))[1] AS name,
           bool_or(data ? 'email') AS has_email,
           (array_agg(data->>'email' ORDER BY kafka_offset DESC) FILTER (WHERE data ? 'email'))[1] AS email,
           count(*) AS changes
    FROM batch
    GROUP BY subject
), updated AS (
    UPDATE customers c SET
        name    = CASE WHEN n.has_name THEN n.name ELSE c.name END,
        email   = CASE WHEN n.has_email THEN n.email ELSE c.email END,
        changes = c.changes + n.changes
    FROM news n
    WHERE c.id = n.id
    RETURNING c.id
)
-- A customer's events all go through one partition, so one applier: no
-- other transaction can insert the same customer between the two parts.
INSERT INTO customers (id, name, email, changes)
SELECT id, name, email, changes FROM news
WHERE id NOT IN (SELECT id FROM updated)

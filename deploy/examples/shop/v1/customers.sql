-- One row per customer (the subject). Events about one customer share a
-- partition, so they arrive in log order; within a batch, the latest value
-- of each field by offset wins, and a field an event does not carry keeps
-- its value.
INSERT INTO customers AS c (id, name, email, changes)
SELECT subject,
       (array_agg(data->>'name' ORDER BY kafka_offset DESC) FILTER (WHERE data ? 'name'))[1],
       (array_agg(data->>'email' ORDER BY kafka_offset DESC) FILTER (WHERE data ? 'email'))[1],
       count(*)
FROM batch
GROUP BY subject
ON CONFLICT (id) DO UPDATE SET
    name    = coalesce(EXCLUDED.name, c.name),
    email   = coalesce(EXCLUDED.email, c.email),
    changes = c.changes + EXCLUDED.changes

-- Every event about a client counts as a change; a rename sets the name.
INSERT INTO clients AS c (client_id, display_name, changes)
SELECT subject,
       (array_agg(data->>'name' ORDER BY kafka_offset DESC) FILTER (WHERE data ? 'name'))[1],
       count(*)
FROM batch
GROUP BY subject
ON CONFLICT (client_id) DO UPDATE SET
    display_name = coalesce(EXCLUDED.display_name, c.display_name),
    changes      = c.changes + EXCLUDED.changes

-- The current email of each client: the last one by offset. An email
-- carried as null removes the row (the client has none), an event without
-- one leaves it. Runs after clients (projections run in order), so the
-- client row exists.
WITH latest AS (
    SELECT DISTINCT ON (subject) subject, data->>'email' AS email
    FROM batch
    WHERE data ? 'email'
    ORDER BY subject, kafka_offset DESC
), cleared AS (
    DELETE FROM client_emails e USING latest l
    WHERE e.client_id = l.subject AND l.email IS NULL
)
INSERT INTO client_emails AS e (client_id, email)
SELECT subject, email FROM latest
WHERE email IS NOT NULL
ON CONFLICT (client_id) DO UPDATE SET email = EXCLUDED.email

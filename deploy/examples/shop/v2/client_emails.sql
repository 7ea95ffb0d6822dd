-- The current email of each client: the last one by offset. Runs after
-- clients (projections run in order), so the client row exists.
INSERT INTO client_emails AS e (client_id, email)
SELECT DISTINCT ON (subject) subject, data->>'email'
FROM batch
WHERE data ? 'email'
ORDER BY subject, kafka_offset DESC
ON CONFLICT (client_id) DO UPDATE SET email = EXCLUDED.email

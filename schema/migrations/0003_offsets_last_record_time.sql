-- Version 3: each partition's offsets row remembers the Kafka timestamp of
-- the last record it covers, written in the same transaction as the offset.
-- An applier that resumes checks it against the record now at that offset:
-- when the events topic was deleted and created again (or truncated), the
-- record differs or is gone, and the target stops loudly instead of
-- silently skipping the new log's first events.
ALTER TABLE sluice_offsets ADD COLUMN last_record_time timestamptz;

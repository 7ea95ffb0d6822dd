-- Version 2: each partition's offsets row remembers the last operator rewind
-- applied to it, written in the same transaction as the new offset, so that a
-- rewind is applied to every partition exactly once, whichever replica owns
-- it and however often replicas restart.
ALTER TABLE sluice_offsets ADD COLUMN rewind_id text;

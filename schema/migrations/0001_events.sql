-- Version 1: the event log as applied to this target, and the offsets that
-- say how far it has been applied. Both are written in one transaction per
-- batch, so the table and its offsets can never disagree.
CREATE TABLE sluice_events (
    source          text        NOT NULL,
    id              text        NOT NULL,
    type            text        NOT NULL,
    subject         text,
    time            timestamptz,
    datacontenttype text,
    dataschema      text,
    data            jsonb,
    data_base64     bytea,
    extensions      jsonb,
    kafka_partition int         NOT NULL,
    kafka_offset    bigint      NOT NULL,
    applied_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, id)
);

CREATE INDEX sluice_events_time ON sluice_events (time);
CREATE INDEX sluice_events_applied_at ON sluice_events (applied_at);

CREATE TABLE sluice_offsets (
    topic       text        NOT NULL,
    partition   int         NOT NULL,
    next_offset bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);

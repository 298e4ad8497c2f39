"""Migration step: the push destinations' tables (transactional outbox, ingestions, rejects)
and the delivery log's per-request columns. See ``etl.sink.outbox`` and ``etl.push``.

States of an outbox row (one per declared dataset per loaded batch):
    pending   written in the load transaction of its batch: exists iff its events committed
    partial   ``sent`` > 0: that many of its events were accepted by the destination
    (gone)    deleted in the transaction that records the last accepted chunk
"""

from __future__ import annotations

PUSH_DDL = """
CREATE TABLE IF NOT EXISTS push_datasets (
    name        text        PRIMARY KEY,
    destination text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('events', 'aggregate')),
    remote_id   text        NULL,  -- the destination's dataset id, once created
    declared_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS push_outbox (
    id         bigserial   PRIMARY KEY,
    dataset    text        NOT NULL REFERENCES push_datasets (name) ON DELETE CASCADE,
    event_ids  uuid[]      NOT NULL,  -- raw datasets: the batch's new events, in push order
    lo         timestamptz NULL,      -- time range of those events (aggregates: the
    hi         timestamptz NULL,      --   buckets to recompute and push again)
    sent       integer     NOT NULL DEFAULT 0
               CHECK (sent >= 0 AND sent <= cardinality(event_ids)),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS push_outbox_dataset_idx ON push_outbox (dataset, id);

CREATE TABLE IF NOT EXISTS push_ingestions (
    ingestion_id text        PRIMARY KEY,
    dataset      text        NOT NULL,
    request_id   text        NULL,
    keys         jsonb       NOT NULL,  -- primary-key values of the records, in order
    status       text        NOT NULL DEFAULT 'accepted'
                 CHECK (status IN ('accepted', 'verified')),
    received     integer     NULL,
    appended     integer     NULL,
    rejected     integer     NULL,
    overwritten  integer     NULL,
    accepted_at  timestamptz NOT NULL DEFAULT now(),
    verified_at  timestamptz NULL
);
CREATE INDEX IF NOT EXISTS push_ingestions_open_idx ON push_ingestions (dataset)
    WHERE status = 'accepted';

CREATE TABLE IF NOT EXISTS push_rejects (
    id           bigserial   PRIMARY KEY,
    dataset      text        NOT NULL,
    record_key   text        NULL,  -- NULL when the destination did not say which record
    code         text        NULL,
    message      text        NOT NULL,
    field        text        NULL,
    ingestion_id text        NULL,
    request_id   text        NULL,
    rejected_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE delivery_log
    ADD COLUMN IF NOT EXISTS destination  text    NOT NULL DEFAULT 'postgresql',
    ADD COLUMN IF NOT EXISTS dataset      text    NULL,
    ADD COLUMN IF NOT EXISTS attempt      integer NULL,
    ADD COLUMN IF NOT EXISTS http_status  integer NULL,
    ADD COLUMN IF NOT EXISTS request_id   text    NULL,
    ADD COLUMN IF NOT EXISTS ingestion_id text    NULL,
    ADD COLUMN IF NOT EXISTS accepted     integer NULL,
    ADD COLUMN IF NOT EXISTS rejected     integer NULL;
CREATE INDEX IF NOT EXISTS delivery_log_sent_idx ON delivery_log (sent_at);
CREATE INDEX IF NOT EXISTS delivery_log_ingestion_idx ON delivery_log (ingestion_id)
    WHERE ingestion_id IS NOT NULL;
"""

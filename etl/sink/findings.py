"""Tables of `etl anomalies`: each run, and every anomaly and rule breach it found."""

FINDINGS_DDL = """
CREATE TABLE IF NOT EXISTS anomaly_runs (
    run_id      bigserial   PRIMARY KEY,
    ran_at      timestamptz NOT NULL DEFAULT now(),
    window_end  timestamptz NOT NULL,
    settings    jsonb       NOT NULL,
    anomalies   integer     NOT NULL,
    breaches    integer     NOT NULL
);
CREATE TABLE IF NOT EXISTS anomaly_findings (
    run_id   bigint      NOT NULL REFERENCES anomaly_runs ON DELETE CASCADE,
    kind     text        NOT NULL CHECK (kind IN ('anomaly', 'breach')),
    series   text        NOT NULL,  -- the type (anomaly) or the rule (breach)
    bucket   timestamptz NOT NULL,
    detail   jsonb       NOT NULL
);
CREATE INDEX IF NOT EXISTS anomaly_findings_run_idx ON anomaly_findings (run_id);
"""

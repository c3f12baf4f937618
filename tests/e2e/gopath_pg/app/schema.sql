-- Applied by the Procfile's release line before each new release's workers start; safe to run again.
CREATE TABLE IF NOT EXISTS jobs (
    id      bigserial PRIMARY KEY,
    payload text NOT NULL,
    state   text NOT NULL DEFAULT 'queued',
    done_by text,
    done_at timestamptz
);
CREATE INDEX IF NOT EXISTS jobs_queued ON jobs (id) WHERE state = 'queued';

// Package pgqueue is a job queue in one PostgreSQL table: a worker claims the oldest queued job, skipping
// rows another worker holds, and marks it done in the same transaction as the work.
package pgqueue // import "github.com/acme/pgqueue"

import (
	"database/sql"
	"time"
)

// claim takes the oldest queued job no other transaction holds; its row stays locked until the
// transaction ends, so a worker that dies mid-job leaves it queued for another (at-least-once).
const claim = `UPDATE jobs SET state='done', done_by=$1, done_at=now()
WHERE id = (SELECT id FROM jobs WHERE state='queued' ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1)
RETURNING id, payload`

// Job is one row of the jobs table.
type Job struct {
	ID      int64
	Payload string
}

// Queue claims jobs for one worker, named in done_by.
type Queue struct {
	DB     *sql.DB
	Worker string
}

// Work claims one job and runs handle on it; the job is done only if handle returns nil and the commit
// succeeds. found is false when no job was queued.
func (q *Queue) Work(handle func(Job) error) (found bool, err error) {
	tx, err := q.DB.Begin()
	if err != nil {
		return false, err
	}
	defer tx.Rollback() // a no-op after Commit
	var job Job
	switch err := tx.QueryRow(claim, q.Worker).Scan(&job.ID, &job.Payload); {
	case err == sql.ErrNoRows:
		return false, nil
	case err != nil:
		return false, err
	}
	if err := handle(job); err != nil {
		return true, err
	}
	return true, tx.Commit()
}

// Idle is how long a worker waits before looking again when the queue is empty.
const Idle = 100 * time.Millisecond

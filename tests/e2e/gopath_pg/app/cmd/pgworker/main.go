// Command pgworker processes the jobs table until SIGTERM, then finishes its job and exits 0.
package main

import (
	"database/sql"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/acme/pgqueue"
	_ "github.com/lib/pq"
)

func main() {
	log.SetFlags(0)
	log.SetOutput(os.Stdout)
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		log.Fatal("pgworker: DATABASE_URL is not set (stackblaze env set DATABASE_URL=postgres://...)")
	}
	db, err := sql.Open("postgres", url)
	if err != nil {
		log.Fatalf("pgworker: %v", err)
	}
	defer db.Close()
	// Each job "works" this long, as a real one would (sending, resizing...).
	work, _ := strconv.Atoi(os.Getenv("JOB_MILLIS"))
	name := os.Getenv("STACKBLAZE_REPLICA")
	if name == "" {
		name, _ = os.Hostname()
	}
	var queued int
	// The release phase made the table: a worker started before it would stop here with PostgreSQL's error.
	if err := db.QueryRow("SELECT count(*) FROM jobs WHERE state='queued'").Scan(&queued); err != nil {
		log.Fatalf("pgworker: %v", err)
	}
	log.Printf("pgworker %s: consuming jobs (%d queued)", name, queued)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	q := &pgqueue.Queue{DB: db, Worker: name}
	done := 0
	for {
		select {
		case sig := <-stop:
			log.Printf("pgworker %s: %v, stopping after %d jobs", name, sig, done)
			return
		default:
		}
		found, err := q.Work(func(job pgqueue.Job) error {
			time.Sleep(time.Duration(work) * time.Millisecond)
			fmt.Printf("pgworker %s: job %d done (%s)\n", name, job.ID, job.Payload)
			return nil
		})
		switch {
		case err != nil:
			log.Printf("pgworker %s: %v", name, err)
			time.Sleep(pgqueue.Idle)
		case found:
			done++
		default:
			select {
			case sig := <-stop:
				log.Printf("pgworker %s: %v, stopping after %d jobs", name, sig, done)
				return
			case <-time.After(pgqueue.Idle):
			}
		}
	}
}

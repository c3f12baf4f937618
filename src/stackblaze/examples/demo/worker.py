"""A demo worker: takes made-up jobs off an imaginary queue, works on them, and stops cleanly on SIGTERM."""

import hashlib
import json
import os
import signal
import sys
import time

replica = os.environ.get("STACKBLAZE_REPLICA", "?")
interval = float(os.environ.get("JOB_INTERVAL", "0.5"))
running = True


def stop(signum: int, frame: object) -> None:
    global running
    running = False
    print(f"replica {replica}: got SIGTERM, finishing the current job", flush=True)


signal.signal(signal.SIGTERM, stop)
print(f"replica {replica} (pid {os.getpid()}) consuming {os.environ.get('QUEUE_NAME')}", flush=True)
job = 0
while running:
    job += 1
    started = time.perf_counter()
    digest = hashlib.sha256(f"{replica}-{job}".encode()).hexdigest()
    for _ in range(2000):
        digest = hashlib.sha256(digest.encode()).hexdigest()
    took = (time.perf_counter() - started) * 1000
    print(json.dumps({"level": "info", "msg": "job done", "job": job, "result": digest[:12], "ms": round(took, 1)}),
          flush=True)
    time.sleep(interval)
print(f"replica {replica}: stopped after {job} jobs", flush=True)
sys.exit(0)

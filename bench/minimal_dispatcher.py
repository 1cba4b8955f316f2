"""The minimal durable dispatcher pgalert's one-worker drain is compared with, in a process of its own as pgalert's
dispatcher is: claim 100 with SKIP LOCKED, POST each to the receiver on one kept-alive connection, mark them done
in one statement. Prints the deliveries a second of the drain alone (the backlog is written and vacuumed first).

    python -m bench.minimal_dispatcher DATABASE_URL RECEIVER_URL JOBS
"""

from __future__ import annotations

import sys
import time

import psycopg

from bench.hotpath import poster


def drain(url: str, receiver_url: str, jobs: int) -> float:
    post = poster(receiver_url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_minimal")
        conn.execute("CREATE TABLE bench_minimal (id bigint PRIMARY KEY, state text NOT NULL DEFAULT 'pending')")
        conn.execute("CREATE INDEX ON bench_minimal (id) WHERE state = 'pending'")
        conn.execute("INSERT INTO bench_minimal (id) SELECT g FROM generate_series(1, %s) AS g", (jobs,))
        conn.execute("VACUUM ANALYZE bench_minimal")
        started = time.perf_counter()
        while True:
            claimed = [r[0] for r in conn.execute(
                "UPDATE bench_minimal SET state = 'sending' WHERE id IN (SELECT id FROM bench_minimal "
                "WHERE state = 'pending' ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 100) RETURNING id")]
            if not claimed:
                break
            for key in claimed:
                post(key)
            conn.execute("UPDATE bench_minimal SET state = 'done' WHERE id = ANY(%s)", (claimed,))
        return jobs / (time.perf_counter() - started)


if __name__ == "__main__":
    print(drain(sys.argv[1], sys.argv[2], int(sys.argv[3])))

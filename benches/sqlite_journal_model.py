"""A model of intake's group commit on SQLite, outside dr-reactor.

Measures SQLite's own work per group of new signals in the signals schema
(WAL, synchronous=FULL, the writer's pragmas), written straight into
`signals` or appended to an unindexed journal that is moved into `signals`
in id order every MERGE_EVERY groups. Used to decide whether such a journal
was worth building (docs/performance.md, stop 28).

    python3 benches/sqlite_journal_model.py direct journal=40 journal=100
"""

import json
import os
import random
import sqlite3
import sys
import tempfile
import time

COLUMNS = (
    "id, source, fingerprint, name, labels, annotations, status, starts_at, "
    "ends_at, received_at, last_seen, episodes"
)
GROUPS = 800
GROUP_SIGNALS = 240  # the storm bench's mean group at 32 connections


def run(merge_every=None):
    path = os.path.join(tempfile.mkdtemp(), "model.db")
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in (
        "journal_mode=WAL",
        "synchronous=FULL",
        "temp_store=MEMORY",
        "wal_autocheckpoint=10000",
    ):
        db.execute(f"PRAGMA {pragma}")
    db.execute(
        "CREATE TABLE signals (id TEXT PRIMARY KEY, source TEXT NOT NULL, "
        "fingerprint TEXT NOT NULL, name TEXT NOT NULL, labels TEXT NOT NULL, "
        "annotations TEXT NOT NULL, status TEXT NOT NULL, starts_at BIGINT NOT NULL, "
        "ends_at BIGINT, received_at BIGINT NOT NULL, last_seen BIGINT NOT NULL, "
        "episodes BIGINT NOT NULL)"
    )
    db.execute("CREATE INDEX signals_status_seen ON signals (status, last_seen)")
    db.execute(f"CREATE TABLE journal ({COLUMNS})")
    checkpointer = sqlite3.connect(path, isolation_level=None)
    rnd = random.Random(1)
    now = 0
    in_groups = 0.0
    merges = []
    for g in range(GROUPS):
        rows = []
        for i in range(GROUP_SIGNALS):
            fp = "%016x" % rnd.getrandbits(64)
            now += 1
            labels = json.dumps(
                {
                    "alertname": "KubePodNotReady",
                    "namespace": "prod",
                    "pod": "pod-" + fp,
                    "service": "svc-%d" % (i % 50),
                    "severity": "warning",
                    "zone": "eu-west-1a",
                }
            )
            rows.append(("alertmanager:" + fp, "alertmanager", fp, "KubePodNotReady",
                         labels, '{"summary":"x"}', "firing", now, None, now, now, 1))
        started = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        ids = [r[0] for r in rows]
        db.execute(
            "SELECT id, status FROM signals WHERE id IN (%s)" % ",".join("?" * len(ids)), ids
        ).fetchall()
        table = "signals" if merge_every is None else "journal"
        for k in range(0, len(rows), 100):
            chunk = rows[k : k + 100]
            db.execute(
                f"INSERT INTO {table} ({COLUMNS}) VALUES "
                + ",".join(["(?,?,?,?,?,?,?,?,?,?,?,?)"] * len(chunk)),
                [v for r in chunk for v in r],
            )
        db.execute("COMMIT")
        in_groups += time.perf_counter() - started
        if merge_every and g % merge_every == merge_every - 1:
            started = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                f"INSERT INTO signals ({COLUMNS}) SELECT {COLUMNS} FROM journal ORDER BY id"
            )
            db.execute("DELETE FROM journal")
            db.execute("COMMIT")
            merges.append(time.perf_counter() - started)
        if g % 5 == 0:  # the background checkpoint, every 20 ms at ~250 groups/s
            checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
    per_group = (in_groups + sum(merges)) * 1000 / GROUPS
    return (
        f"{per_group:.2f} ms of SQLite per group ({in_groups * 1000 / GROUPS:.2f} in the "
        f"group commits), merges: {len(merges)}, longest {max(merges or [0]) * 1000:.0f} ms"
    )


for arg in sys.argv[1:] or ["direct", "journal=40"]:
    every = None if arg == "direct" else int(arg.split("=")[1])
    print(f"{arg}: {run(every)}")

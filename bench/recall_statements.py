"""The SQL statements one SQLite recall sends, counted with ``set_trace_callback``.

On a copy of the outside check's database (``bench/recall_lexical.py --build DIR``
makes it; recalls write read-audit events, so the copy is deleted after): 20 warm-up
recalls per scope, then the statements of 100 recalls unscoped and 100 scoped to one
of 20 namespaces (median, least, most: the most is a recall that flushed the read
audit), and every statement of one recall of each scope. Run it with each checkout's
``src`` first on ``PYTHONPATH``::

    PYTHONPATH=src python bench/recall_statements.py DIR
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.recall_rounds import _open  # the check's database, queries and vectors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("db", type=Path, help="folder of the check's database")
    ap.add_argument("--n", type=int, default=100_000)
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="recall-statements-"))
    try:
        for name in ("speed.db", "corpus.txt", "qv.npy"):
            shutil.copy(args.db / name, scratch / name)
        db, me, queries, qv, _ = _open(scratch, args.n)
        scopes = {"unscoped": lambda i: "corp/**", "scoped": lambda i: f"corp/ns{i % 20}"}
        for i in range(20):
            for ns in scopes.values():
                me.recall(queries[i], namespace=ns(i), k=10, query_embedding=qv[i].tolist())
        sent: list[str] = []
        for conn in list(db.storage._all_conns):
            conn.set_trace_callback(sent.append)
        for scope, ns in scopes.items():
            counts = []
            for i in range(20, 120):
                sent.clear()
                me.recall(queries[i], namespace=ns(i), k=10, query_embedding=qv[i].tolist())
                counts.append(len(sent))
                if i == 25:
                    shown = [" ".join(s.split())[:120] for s in sent]
            print(f"{scope}: statements per recall median {np.median(counts):.0f}, "
                  f"least {min(counts)}, most {max(counts)}; recall 25:")
            for s in shown:
                print("    " + s)
        db.close()
    finally:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    main()

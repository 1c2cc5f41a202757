"""Two processes start on one fresh SQLite store at once (two replicas, or a restart racing the
old process): both run migrate(). Expected: both succeed (or one waits), the schema at head.
Usage: python attack/concurrent_migrate.py [rounds]   (drift-service env)"""
import multiprocessing as mp, sys, tempfile, traceback
from pathlib import Path


def migrate(url: str, barrier, out) -> None:
    from drift_service.store import Store
    store = Store(url)
    barrier.wait()
    try:
        store.migrate()
        out.put("ok")
    except Exception as exc:
        out.put(f"{type(exc).__name__}: {str(exc).splitlines()[0][:150]}")
    finally:
        store.close()


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    failures = 0
    for r in range(rounds):
        url = f"sqlite:///{tempfile.mkdtemp()}/drift.db"
        barrier, out = mp.Barrier(2), mp.Queue()
        procs = [mp.Process(target=migrate, args=(url, barrier, out)) for _ in range(2)]
        for p in procs: p.start()
        for p in procs: p.join(120)
        results = [out.get() for _ in procs]
        bad = [x for x in results if x != "ok"]
        failures += bool(bad)
        print(f"round {r}: {results}")
    print(f"BUG: {failures}/{rounds} rounds had a failed migrate" if failures else "OK")
    sys.exit(1 if failures else 0)

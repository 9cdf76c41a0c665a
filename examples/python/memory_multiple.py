"""One producer, several nodes, and a consumer group.

* "producer" is a registered node that emits orders (it never receives its
  own events: broadcast-except-sender).
* "audit" and "metrics" each see every order.
* "worker-1".."worker-3" form the group "workers": each order goes to exactly
  one of them (by key), so together they process every order once.

Run: python examples/python/memory_multiple.py
"""

import threading
import time
from collections import Counter

import chronica

ORDERS = 1000


def main():
    lock = threading.Lock()
    seen = Counter()
    processed_by = Counter()

    def counter(uid):
        def cb(events):
            with lock:
                seen[uid] += sum(1 for e in events if e.kind == "user")

        return cb

    def worker(uid):
        def cb(events):
            for e in events:
                if e.kind == "user":
                    order = e.json()
                    with lock:
                        processed_by[uid] += 1
                        seen["workers"] += 1
                    assert order["id"] >= 0

        return cb

    with chronica.Director() as d:
        d.register("producer", lambda events: None, topics=["commands"])
        d.register("audit", counter("audit"), topics=["orders.>"])
        d.register("metrics", counter("metrics"), topics=["orders.*"])
        for i in range(1, 4):
            d.register(f"worker-{i}", worker(f"worker-{i}"), topics=["orders.created"], group="workers")

        for i in range(ORDERS):
            d.emit("orders.created", {"id": i, "total": i * 1.5}, source="producer", key=f"customer-{i % 17}")

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if seen["audit"] == seen["metrics"] == seen["workers"] == ORDERS:
                    break
            time.sleep(0.01)

        print(f"audit saw {seen['audit']}, metrics saw {seen['metrics']}, the group processed {seen['workers']}")
        for uid, n in sorted(processed_by.items()):
            print(f"  {uid}: {n} orders")
        print("producer stats:", d.stats("producer"))
        assert seen["workers"] == ORDERS


if __name__ == "__main__":
    main()

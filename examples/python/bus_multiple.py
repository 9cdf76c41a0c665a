"""Several subscriptions and a consumer group on one EventBus. Mirrors
memory_multiple.py:

* "audit" (orders.>) and "metrics" (orders.*) each see every order;
* three workers form the group "workers": each order goes to exactly one of
  them (by key), so together they process every order once.

Run: python examples/python/bus_multiple.py
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

    with chronica.EventBus() as bus:

        @bus.on("orders.>")
        def audit(event):
            with lock:
                seen["audit"] += 1

        @bus.on("orders.*")
        def metrics(event):
            with lock:
                seen["metrics"] += 1

        def worker(name):
            def handle(event):
                order = bus.decode(event, dict)
                assert order["id"] >= 0
                with lock:
                    processed_by[name] += 1
                    seen["workers"] += 1

            return handle

        for i in range(1, 4):
            bus.on("orders.created", worker(f"worker-{i}"), group="workers")

        for i in range(ORDERS):
            bus.emit("orders.created", {"id": i, "total": i * 1.5}, key=f"customer-{i % 17}")

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if seen["audit"] == seen["metrics"] == seen["workers"] == ORDERS:
                    break
            time.sleep(0.01)

        print(f"audit saw {seen['audit']}, metrics saw {seen['metrics']}, the group processed {seen['workers']}")
        for name, n in sorted(processed_by.items()):
            print(f"  {name}: {n} orders")
        assert seen["workers"] == ORDERS


if __name__ == "__main__":
    main()

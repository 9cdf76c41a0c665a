"""The smallest Chronica program in Python: one director, one node, a few
events, a clean close.

Run: python examples/python/memory_basic.py   (after `pip install ./python`)
"""

import chronica


def printer(events):
    """A node's callback: it receives a list of chronica.Event."""
    for e in events:
        if e.kind == "root":
            print(f"[printer] control {e.topic} {e.payload.decode()}")
        else:
            print(f"[printer] {e.topic}: {e.payload.decode()} (id {e.id})")


def main():
    with chronica.Director() as d:
        d.register("printer", printer)
        d.emit("greetings", b"hello")
        d.emit("greetings", "bonjour")
        d.emit("orders.created", {"order": 42, "total": 9.5})
        undelivered = d.close(timeout=2.0)
        stats = d.stats("printer")
        print(f"undelivered: {undelivered}; printer: {stats}")
        assert stats.balanced()


if __name__ == "__main__":
    main()

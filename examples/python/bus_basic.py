"""The smallest EventBus program in Python: one bus, one subscription, a few
events, a clean close. Mirrors memory_basic.py.

Run: python examples/python/bus_basic.py   (after `pip install ./python`)
"""

import chronica


def main():
    with chronica.EventBus() as bus:

        @bus.on(">")
        def printer(event):
            """A handler receives one chronica.Event per call."""
            print(f"[printer] {event.topic}: {bus.decode(event)!r} (id {event.id})")

        bus.emit("greetings", "hello")
        bus.emit("greetings", "bonjour")
        bus.emit("orders.created", {"order": 42, "total": 9.5})
        stats = bus.off(printer)
        print(f"printer: {stats}")
        assert stats.balanced()


if __name__ == "__main__":
    main()

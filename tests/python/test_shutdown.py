"""Interpreter shutdown with a director still open neither hangs nor crashes."""

import subprocess
import sys
import textwrap

import pytest

SCRIPTS = {
    "open_director_busy_callbacks": """
        import chronica, time
        d = chronica.Director()
        def slow(events):
            time.sleep(0.001)
        for i in range(4):
            d.register(f"n{i}", slow)
        for i in range(20000):
            d.emit("t", b"x" * 64)
        print("exiting")
    """,
    "daemon_thread_still_emitting": """
        import chronica, threading, time
        d = chronica.Director()
        d.register("a", lambda events: sum(len(e.payload) for e in events))
        def spam():
            while True:
                try:
                    d.emit("t", b"x")
                except chronica.ClosedError:
                    return
        threading.Thread(target=spam, daemon=True).start()
        time.sleep(0.2)
        print("exiting")
    """,
    "callback_referencing_its_director": """
        import chronica
        d = chronica.Director()
        def echo(events):
            for e in events:
                if e.kind == "user" and e.payload == b"ping":
                    d.emit("t", b"pong", source="a")
        d.register("a", echo)
        d.register("b", lambda events: None)
        for i in range(1000):
            d.emit("t", b"ping")
        print("exiting")
    """,
    "director_dropped_in_a_callback": """
        import chronica, gc
        holder = {}
        def cb(events):
            holder.pop("d", None)
        holder["d"] = chronica.Director()
        holder["d"].register("a", cb)
        holder["d"].emit("t", b"x")
        import time; time.sleep(0.5)
        gc.collect()
        print("exiting")
    """,
    "sharing_bus_left_open": """
        import chronica, time
        d = chronica.Director()
        bus = chronica.EventBus(d)
        bus.on("t", lambda e: time.sleep(0.001))
        for i in range(2000):
            bus.emit("t", b"x")
        print("exiting")
    """,
    "sharing_buses_collected_just_before_exit": """
        import chronica, gc, time
        d = chronica.Director()
        buses = [chronica.EventBus(d) for _ in range(20)]
        for bus in buses:
            bus.on("t", lambda e: time.sleep(0.001))
        for i in range(200):
            d.emit("t", b"x")
        del bus
        buses.clear()  # each ends its subscription on a thread of its own
        gc.collect()
        print("exiting")
    """,
    # The interpreter exits while a daemon thread's close waits for a
    # callback still running: the atexit hook used to skip the director
    # (closing already) and finalise under the callback, which aborted
    # the process ("FATAL: exception not rethrown").
    "close_under_way_on_a_daemon_thread": """
        import chronica, threading, time
        d = chronica.Director()
        running = threading.Event()
        def busy(events):
            if events[0].kind == "user":
                running.set()
                end = time.monotonic() + 1.0
                while time.monotonic() < end:
                    pass
        d.register("a", busy)
        d.emit("t", b"x")
        running.wait(10)
        threading.Thread(target=d.close, args=(5.0,), daemon=True).start()
        while not d.closed:
            time.sleep(0.01)
        print("exiting")
    """,
    # Collected while a callback runs past the finalizer's bounded wait
    # (2 s drain and 1 s): the close goes on on a thread of its own, which
    # the atexit hook skipped, as above.
    "collected_while_a_callback_outlasts_the_finalizer": """
        import chronica, threading, time
        d = chronica.Director()
        running = threading.Event()
        def busy(events):
            if events[0].kind == "user":
                running.set()
                end = time.monotonic() + 3.5
                while time.monotonic() < end:
                    pass
        d.register("a", busy)
        d.emit("t", b"x")
        running.wait(10)
        del d
        print("exiting")
    """,
    "sys_exit_inside_with": """
        import chronica, sys
        with chronica.Director() as d:
            d.register("a", lambda events: None)
            d.emit("t", b"x")
            print("exiting")
            sys.exit(0)
    """,
}


# The same close under way, for a fabric.
SCRIPTS["distributed_close_under_way_on_a_daemon_thread"] = SCRIPTS[
    "close_under_way_on_a_daemon_thread"
].replace("chronica.Director()", 'chronica.Distributed("memory://exit-close-under-way", trust_token="t")')


# A Python adapter's publish still running when the interpreter exits: the
# close (explicit, or the atexit hook's) gives up on it after about 2 s, and
# the layer's blocking thread stays inside the method. CPython ended that
# thread as it took the GIL back in `time.sleep`, and the forced unwind
# crossed pyo3's frames: the process aborted (rc 134, "FATAL: exception not
# rethrown") in both forms, every run. The adapter's methods now go through
# `exiting.rs`, which parks the thread.
SLOW_PUBLISH = """
    import chronica, time

    class SlowBroker:
        def publish(self, topic, value, key, headers):
            for _ in range(200):
                time.sleep(0.05)
        def subscribe(self, pattern, group, deliver):
            pass
        def ack(self, token):
            pass
        def close(self):
            pass

    d = chronica.Distributed(SlowBroker(), instance_id="x", trust_token="t")
    d.emit("t", b"x")
    time.sleep(0.2)  # the publish is under way (no assertion rests on it)
    if {explicit}:
        assert d.close(1.0) == 1  # the publish given up on, unpublished
    print("exiting")
"""
SCRIPTS["python_adapter_publish_outlasting_atexit"] = SLOW_PUBLISH.replace("{explicit}", "False")
SCRIPTS["python_adapter_publish_outlasting_close"] = SLOW_PUBLISH.replace("{explicit}", "True")

# The same, the Python code being the `__str__` of the exception a publish
# raised, which the layer's blocking thread calls for the broker error's
# text. That call went through pyo3, not `exiting.rs`: the process aborted
# as above (rc -6 every run, both forms, before the fix).
SLOW_ERROR_TEXT = """
    import chronica, time

    class SlowText(Exception):
        def __str__(self):
            for _ in range(200):
                time.sleep(0.05)
            return "slow"

    class FailingBroker:
        def publish(self, topic, value, key, headers):
            raise SlowText()
        def subscribe(self, pattern, group, deliver):
            pass
        def ack(self, token):
            pass
        def close(self):
            pass

    d = chronica.Distributed(FailingBroker(), instance_id="x", trust_token="t")
    d.emit("t", b"x")
    time.sleep(0.2)  # the error's text is being made (no assertion rests on it)
    if {explicit}:
        assert d.close(1.0) == 1  # the publish given up on, unpublished
    print("exiting")
"""
SCRIPTS["python_adapter_error_text_outlasting_atexit"] = SLOW_ERROR_TEXT.replace("{explicit}", "False")
SCRIPTS["python_adapter_error_text_outlasting_close"] = SLOW_ERROR_TEXT.replace("{explicit}", "True")


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_exit_with_open_director(name):
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPTS[name])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "exiting"
    assert "Fatal Python error" not in proc.stderr


# A director made after chronica's atexit hook has run: an atexit handler
# registered before `import chronica` runs after chronica's own. Its delivery
# threads were still delivering (or waiting for the GIL) when the interpreter
# finalised; CPython then ends such a thread mid-call, which aborted the
# process ("FATAL: exception not rethrown") or hung it.
LATE_DIRECTOR = """
    import atexit

    KEEP = []

    def late():
        import chronica
        d = chronica.Director()
        KEEP.append(d)  # still open at exit
        seen = []
        d.register("n", {callback})
        for i in range(100_000):
            d.emit("t", b"x")
        print("exiting")

    atexit.register(late)
    import chronica
"""


@pytest.mark.parametrize(
    "callback",
    ["lambda events: seen.extend(events)", "seen.append"],
    ids=["python_callback", "c_callable_callback"],
)
def test_director_made_in_a_late_atexit_handler(callback):
    script = textwrap.dedent(LATE_DIRECTOR).replace("{callback}", callback)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "exiting"
    assert "FATAL" not in proc.stderr and "Fatal Python error" not in proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr


# Daemon threads still inside chronica calls while the main thread exits.
# CPython (before 3.14) ends such a thread when it takes the GIL after
# finalisation has begun, by a forced unwind, which aborts the process if
# it crosses Rust frames. Each script ends with an object collected while
# the interpreter finalises that runs Python code for a while, so that the
# GIL is handed to the daemon threads then, every time.
DAEMON_PREAMBLE = """
    import chronica, threading, time

    def forever(call, threads=4):
        def loop():
            while True:
                try:
                    call()
                except chronica.ChronicaError:
                    pass
        for _ in range(threads):
            threading.Thread(target=loop, daemon=True).start()
"""

# A cycle only the final collection frees, with the GC off so none
# before it does; `__del__` keeps the GIL moving for 1 s of finalisation.
FINALISING_BUSILY = """
    import gc as _gc

    class _Busy:
        def __del__(self, monotonic=time.monotonic):
            end = monotonic() + 1.0
            while monotonic() < end:
                pass

    _gc.disable()
    _cycle = _Busy()
    _cycle.me = _cycle
    del _cycle
    print("exiting")
"""

DAEMON_SCRIPTS = {
    # Python code that a chronica method runs from Rust (the JSON encoding
    # of a payload, a hook on the emitter's thread, Event.json, an async
    # node's registration): the unwind crossed our frames and the process
    # aborted ("FATAL: exception not rethrown", rc -6). Without the fix,
    # ten runs each: JSON emits and Event.json aborted 10 times, the hook
    # once (it runs only while the director is open), the registration
    # never; a daemon thread emitting dicts while the main thread returned,
    # with no busy finalisation, aborted 39 runs in 40.
    "emitting_json_payloads": """
        d = chronica.Director()
        d.register("a", lambda events: None)
        forever(lambda: d.emit("t", {"a": [1, 2, 3], "b": "x" * 100}))
    """,
    "in_a_python_hook": """
        def on_drop(uid, event, reason):
            sum(range(100))
        d = chronica.Director(overflow="drop_newest", queue_capacity=1, on_drop=on_drop)
        d.register("a", lambda events: time.sleep(0.01))
        forever(lambda: d.emit("t", b"x"))
    """,
    "decoding_events": """
        d = chronica.Director()
        got = []
        d.register("a", got.extend)
        d.emit("t", {"k": 1})
        while not got:
            time.sleep(0.01)
        forever(got[0].json)
    """,
    "registering_async_nodes": """
        import asyncio
        d = chronica.Director()
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()
        async def cb(events):
            pass
        n = iter(range(10**9))
        def reg():
            uid = f"n{next(n)}"
            d.register(uid, cb, loop=loop)
            d.unregister(uid)
        forever(reg, threads=2)
    """,
    # Python code a user object runs while its argument is converted (an
    # `__index__` or `__float__` of its own, for a capacity or a timeout):
    # it ran under pyo3's conversion, not `exiting.rs`, and the process
    # aborted (rc -6, FATAL: exception not rethrown) before the fix, each
    # script. Each call fails after the conversion (a uid taken, unknown).
    "converting_an_index": """
        class Count:
            def __index__(self):
                time.sleep(0.01)  # lets the GIL go and takes it back
                return 4
        d = chronica.Director()
        d.register("a", lambda events: None)
        forever(lambda: d.register("a", lambda events: None, queue_capacity=Count()))
    """,
    "converting_a_float": """
        class Seconds:
            def __float__(self):
                time.sleep(0.01)  # lets the GIL go and takes it back
                return 0.01
        d = chronica.Director()
        forever(lambda: d.unregister_draining("nobody", Seconds()))
    """,
    # Python code of a user object's own that a call runs while it reads
    # the object, here the `__iter__` of a registration's topics: it ran
    # under pyo3's iteration, not `exiting.rs`, and the process crashed
    # (rc -11, 2 of 2 runs) before the fix.
    "iterating_topics": """
        class Topics:
            def __iter__(self):
                time.sleep(0.01)  # lets the GIL go and takes it back
                yield "t"
                time.sleep(0.01)
        d = chronica.Director()
        d.register("a", lambda events: None)
        forever(lambda: d.register("a", lambda events: None, topics=Topics()))
    """,
    # An iterator the binding lets go of unfinished (it refused an item):
    # a generator's `finally` ran in the Rust frame that dropped it, and
    # the process aborted (rc -6, 3 of 3) before the fix.
    "letting_go_of_an_unfinished_generator": """
        class Topics:
            def __iter__(self):
                try:
                    yield 1
                finally:
                    time.sleep(0.01)  # lets the GIL go and takes it back
        d = chronica.Director()
        def register():
            try:
                d.register("a", lambda events: None, topics=Topics())
            except TypeError:  # "topics must contain str only", as expected
                pass
        forever(register)
    """,
    # The `__iter__` of the headers a Python adapter's client hands to
    # `deliver`, under pyo3's conversion to a Vec: the process aborted
    # (rc -6, 2 of 2) before the fix.
    "iterating_headers": """
        class Headers:
            def __len__(self):
                return 1
            def __getitem__(self, i):
                if i:
                    raise IndexError(i)
                return ("k", "v")
            def __iter__(self):
                time.sleep(0.01)  # lets the GIL go and takes it back
                yield ("k", "v")
                time.sleep(0.01)
        got = []
        class Tap:
            def publish(self, topic, value, key, headers):
                pass
            def subscribe(self, pattern, group, deliver):
                got.append(deliver)
            def ack(self, token):
                pass
            def close(self):
                pass
        f = chronica.Distributed(Tap(), instance_id="headers", trust_token="t")
        f.register("r", lambda events: None)
        while not got:
            time.sleep(0.01)
        forever(lambda: got[0]("orders", b"x", None, Headers(), None))
    """,
    # The `__getattr__` that finds a Python adapter's methods, under pyo3's
    # `hasattr` and `getattr`: the process aborted (rc -6, 3 of 3) before
    # the fix.
    "reading_an_adapters_methods": """
        class NoMethods:
            def __getattr__(self, name):
                time.sleep(0.01)  # lets the GIL go and takes it back
                raise AttributeError(name)
        def construct():
            try:
                chronica.Distributed(NoMethods(), trust_token="t")
            except TypeError:  # "publish is missing", as expected
                pass
        forever(construct)
    """,
    # Calls that wait with the GIL released: pyo3 parks a thread CPython
    # ends as it takes the GIL back after them. These guard that.
    "in_waiting_calls": """
        d = chronica.Director(overflow="block", queue_capacity=1, block_timeout=60.0)
        d.register("a", lambda events: time.sleep(0.01))
        forever(lambda: d.subscribe("a", "x.*"))
        forever(lambda: d.emit("t", b"x"))
        forever(lambda: d.unregister("nobody"))
        n = iter(range(10**9))
        def reg():
            uid = f"n{next(n)}"
            d.register(uid, lambda events: None, concurrency=8)
            d.unregister(uid)
        forever(reg, threads=2)
        bus = chronica.EventBus(chronica.Director())
        def on_off():
            bus.off(bus.on("t", lambda e: None))
        forever(on_off, threads=2)
        f = chronica.Distributed("memory://exit-waiting-calls", trust_token="t")
        forever(lambda: f.join_group("g"), threads=2)
        forever(lambda: f.flush(0.01), threads=2)
    """,
}


@pytest.mark.parametrize("name", sorted(DAEMON_SCRIPTS))
def test_exit_with_daemon_threads_inside_calls(name):
    script = "\n".join(
        textwrap.dedent(part)
        for part in (DAEMON_PREAMBLE, DAEMON_SCRIPTS[name], "time.sleep(0.2)", FINALISING_BUSILY)
    )
    # A hang fails by the timeout (TimeoutExpired) rather than stalling the suite.
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "exiting"
    assert "FATAL" not in proc.stderr and "Fatal Python error" not in proc.stderr, proc.stderr
    # The daemon threads' loops ran as written (no other exception ended one).
    assert "Traceback" not in proc.stderr, proc.stderr

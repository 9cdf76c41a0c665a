"""A late joiner rebuilding its state from the current-state event.

"ledger" keeps a balance per account from "tx" events. Later, "replica"
registers. Its first event is the root event chronica.pull_current_state,
carrying the director's trust token and the sorted uids of its peers. The
replica checks the token, asks each peer for a snapshot, applies it, and from
then on follows the live "tx" events like the ledger.

Run: python examples/python/state_sync.py
"""

import threading
import time

import chronica

TOKEN = "s3cret"


class Ledger:
    """A node holding balances; answers snapshot requests."""

    def __init__(self, director, uid):
        self.d, self.uid = director, uid
        self.balances = {}
        self.last_tx = 0  # id of the last transaction applied
        self.lock = threading.Lock()

    def __call__(self, events):
        for e in events:
            if e.topic == "tx":
                tx = e.json()
                with self.lock:
                    self.balances[tx["account"]] = self.balances.get(tx["account"], 0) + tx["amount"]
                    self.last_tx = e.id
            elif e.topic == "snapshot.request":
                with self.lock:
                    snapshot = {"balances": dict(self.balances), "upto": self.last_tx}
                self.d.emit_to(e.source, "snapshot", snapshot, source=self.uid)


class Replica(Ledger):
    """A late joiner: rebuilds from a peer's snapshot, then follows live events."""

    def __init__(self, director, uid):
        super().__init__(director, uid)
        self.ready = threading.Event()
        self.buffered = []

    def __call__(self, events):
        for e in events:
            if e.topic == chronica.PULL_CURRENT_STATE:
                if e.trust_token != TOKEN:
                    raise PermissionError("untrusted control event")
                peers = e.json()["peers"]
                print(f"[replica] joined; peers: {peers}")
                self.d.emit_to("ledger", "snapshot.request", b"", source=self.uid)
            elif e.topic == "snapshot":
                snap = e.json()
                with self.lock:
                    self.balances = {k: v for k, v in snap["balances"].items()}
                    # Apply live events that arrived after the snapshot was taken.
                    for tx_id, tx in self.buffered:
                        if tx_id > snap["upto"]:
                            self.balances[tx["account"]] = self.balances.get(tx["account"], 0) + tx["amount"]
                    self.buffered = []
                self.ready.set()
                print(f"[replica] rebuilt {len(self.balances)} accounts from the snapshot")
            elif e.topic == "tx":
                if self.ready.is_set():
                    super().__call__([e])
                else:
                    self.buffered.append((e.id, e.json()))


def main():
    with chronica.Director(trust_token=TOKEN) as d:
        ledger = Ledger(d, "ledger")
        d.register("ledger", ledger, topics=["tx", "snapshot.request"])
        for i in range(500):
            d.emit("tx", {"account": f"acct-{i % 10}", "amount": i})
        replica = Replica(d, "replica")
        d.register("replica", replica, topics=["tx", "snapshot"])
        for i in range(500, 600):
            d.emit("tx", {"account": f"acct-{i % 10}", "amount": i})

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if replica.ready.is_set() and d.stats("replica").pending == 0 and d.stats("ledger").pending == 0:
                break
            time.sleep(0.01)
        with ledger.lock, replica.lock:
            same = ledger.balances == replica.balances
        print(f"[replica] state matches the ledger: {same}")
        assert same


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""model.py - an independent model of the allocation domain: oracle, generator and checker
for tests/e2e/fault.sh; its selftest runs as the unit test model_selftest.

It follows the rules of docs/domain.md, written again from the page (not from the
processor's code), small and slow on purpose:

  * a Product (one per sku) owns its Batches and a version number bumped once per accepted
    change; batch preference is warehouse first, then the earliest eta, ties to the batch
    created first; lines are never split; an identical line already allocated is a no-op;
  * ChangeBatchQuantity sets the quantity (always a version bump and a BatchQuantityChanged,
    even when unchanged), then takes back the newest lines while the batch is short (LIFO);
  * a message bus runs every command through a FIFO queue: each Deallocated is published,
    leaves the read model and is reallocated (a new Allocate that bumps the version when it
    allocates, or ends in OutOfStock); validation and the refusals end in a rejection.

Subcommands:

  model.py selftest
      the book's scenarios and the page's edge cases against the model itself.
  model.py generate --seed N --prefix P [--skus 200] [--commands 21000]
      a deterministic stream of commands, one "key<TAB>json" line each, keyed so that every
      command's outcome depends only on the history of its own key (see generate()).
  model.py check --prefix P --commands FILE --dump DIR --decoder BIN
      runs the stream through the model and compares the expected final state and events
      with what fault.sh dumped from Postgres and Kafka into DIR (event values are decoded
      with `BIN decode`). Exit 1 with a diff when they differ.

Python 3.11, standard library only.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime
import json
import random
import re
import struct
import subprocess
import sys
from typing import Callable, Iterable

# ------------------------------------------------------------------------------ the model


@dataclasses.dataclass(frozen=True)
class OrderLine:
    orderid: str
    sku: str
    qty: int


@dataclasses.dataclass
class Batch:
    ref: str
    sku: str
    purchased: int
    eta: str | None  # YYYY-MM-DD (sorts like the date), None = in the warehouse
    created: int  # creation order: breaks ties in the preference
    lines: list[OrderLine] = dataclasses.field(default_factory=list)  # allocation order

    @property
    def allocated(self) -> int:
        return sum(line.qty for line in self.lines)

    @property
    def available(self) -> int:
        return self.purchased - self.allocated

    def can_take(self, line: OrderLine) -> bool:
        return line.sku == self.sku and self.available >= line.qty

    def preference(self) -> tuple:
        return (self.eta is not None, self.eta or "", self.created)


def event(kind: str, **fields) -> dict:
    """An event as `allocation-processor decode` prints it."""
    return {"type": kind, **fields}


class Product:
    """The aggregate: every change to a sku's batches goes through here."""

    def __init__(self, sku: str):
        self.sku = sku
        self.version = 0
        self.batches: list[Batch] = []  # creation order
        self.events: list[dict] = []  # recorded, not yet collected by the bus

    def batch(self, ref: str) -> Batch:
        return next(b for b in self.batches if b.ref == ref)

    def add_batch(self, batch: Batch) -> None:
        self.batches.append(batch)
        self.version += 1
        self.events.append(event("BatchCreated", ref=batch.ref, sku=batch.sku,
                                 qty=batch.purchased, eta=batch.eta))

    def allocate(self, line: OrderLine) -> None:
        if any(line in b.lines for b in self.batches):
            return  # the identical line is allocated already: no change, no event
        for b in sorted(self.batches, key=Batch.preference):
            if b.can_take(line):
                b.lines.append(line)
                self.version += 1
                self.events.append(event("Allocated", orderid=line.orderid, sku=line.sku,
                                         qty=line.qty, batchref=b.ref))
                return
        self.events.append(event("OutOfStock", sku=self.sku))  # changes nothing

    def change_batch_quantity(self, ref: str, qty: int) -> None:
        b = self.batch(ref)
        b.purchased = qty
        self.version += 1
        self.events.append(event("BatchQuantityChanged", ref=ref, sku=self.sku, qty=qty))
        while b.available < 0:
            line = b.lines.pop()  # the most recently allocated line goes first
            self.events.append(event("Deallocated", orderid=line.orderid, sku=line.sku,
                                     qty=line.qty, batchref=ref))


class Rejected(Exception):
    def __init__(self, reason: str, message: str = ""):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


# ------------------------------------------------------------------------------ validation

DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
FIELDS = {  # command type -> its fields: (name, kind, required)
    "CreateBatch": [("ref", "str", True), ("sku", "str", True), ("qty", "qty>=0", True),
                    ("eta", "date", False)],
    "Allocate": [("orderid", "str", True), ("sku", "str", True), ("qty", "qty>0", True)],
    "ChangeBatchQuantity": [("ref", "str", True), ("qty", "qty>=0", True)],
}


def validate(command: dict) -> None:
    for name, kind, required in FIELDS[command["type"]]:
        value = command.get(name)
        if value is None or value == "":
            if required:
                raise Rejected("invalid_command", f"missing {name}")
            continue
        if kind == "str":
            ok = isinstance(value, str) and len(value.encode()) <= 255
        elif kind == "date":
            ok = isinstance(value, str) and DATE.match(value) is not None and valid_date(value)
        else:
            ok = isinstance(value, int) and not isinstance(value, bool) and \
                (value > 0 if kind == "qty>0" else value >= 0)
        if not ok:
            raise Rejected("invalid_command", f"bad {name}")


def valid_date(text: str) -> bool:
    try:
        datetime.date.fromisoformat(text)
        return True
    except ValueError:
        return False


# ------------------------------------------------------------------------------ the service


class Allocation:
    """The message bus, the unit of work's bookkeeping and the read model, all in memory."""

    def __init__(self):
        self.products: dict[str, Product] = {}
        self.batches: dict[str, Batch] = {}  # ref -> batch: refs are unique system-wide
        self.view: dict[tuple[str, str], list[str]] = {}  # (orderid, sku) -> batchrefs
        self.notifications: list[str] = []
        self._created = 0
        self._seen: list[Product] = []  # products handed out during this command

    def _product(self, sku: str) -> Product | None:
        product = self.products.get(sku)
        if product is not None and product not in self._seen:
            self._seen.append(product)
        return product

    def handle(self, command: dict) -> list[dict]:
        """Runs one command to the end; returns the events it published, in order.
        Raises Rejected (having changed nothing) when the command is refused."""
        validate(command)
        self._seen = []
        published: list[dict] = []
        queue = collections.deque()
        COMMAND_HANDLERS[command["type"]](self, command)
        self._collect(queue)
        while queue:
            evt = queue.popleft()
            for handler in EVENT_HANDLERS[evt["type"]]:
                handler(self, evt, published)
                self._collect(queue)
        return published

    def _collect(self, queue: collections.deque) -> None:
        for product in self._seen:
            queue.extend(product.events)
            product.events.clear()

    # command handlers

    def create_batch(self, cmd: dict) -> None:
        ref, sku, qty, eta = cmd["ref"], cmd["sku"], cmd["qty"], cmd.get("eta")
        existing = self.batches.get(ref)
        if existing is not None:
            if (existing.sku, existing.purchased, existing.eta) == (sku, qty, eta):
                return  # the same batch again: accepted, nothing to do
            raise Rejected("batch_exists", f"batch {ref} exists")
        product = self._product(sku)
        if product is None:
            product = self.products[sku] = Product(sku)
            self._seen.append(product)
        batch = Batch(ref, sku, qty, eta, self._created)
        self._created += 1
        self.batches[ref] = batch
        product.add_batch(batch)

    def allocate(self, cmd: dict) -> None:
        product = self._product(cmd["sku"])
        if product is None:
            raise Rejected("invalid_sku", f"Invalid sku {cmd['sku']}")
        product.allocate(OrderLine(cmd["orderid"], cmd["sku"], cmd["qty"]))

    def change_batch_quantity(self, cmd: dict) -> None:
        batch = self.batches.get(cmd["ref"])
        if batch is None:
            raise Rejected("unknown_batch", f"unknown batch {cmd['ref']}")
        self._product(batch.sku).change_batch_quantity(cmd["ref"], cmd["qty"])

    # event handlers

    def publish(self, evt: dict, published: list) -> None:
        published.append(evt)

    def add_to_view(self, evt: dict, published: list) -> None:
        self.view.setdefault((evt["orderid"], evt["sku"]), []).append(evt["batchref"])

    def remove_from_view(self, evt: dict, published: list) -> None:
        rows = self.view[(evt["orderid"], evt["sku"])]
        rows.remove(evt["batchref"])
        if not rows:
            del self.view[(evt["orderid"], evt["sku"])]

    def reallocate(self, evt: dict, published: list) -> None:
        self._product(evt["sku"]).allocate(OrderLine(evt["orderid"], evt["sku"], evt["qty"]))

    def notify(self, evt: dict, published: list) -> None:
        self.notifications.append(f"Out of stock for {evt['sku']}")

    def snapshot(self) -> dict:
        return {
            "products": {sku: p.version for sku, p in self.products.items()},
            "batches": {ref: (b.sku, b.purchased, b.eta) for ref, b in self.batches.items()},
            "allocations": {ref: [(line.orderid, line.qty) for line in b.lines]
                            for ref, b in self.batches.items() if b.lines},
            "view": {key: list(rows) for key, rows in self.view.items()},
        }


COMMAND_HANDLERS: dict[str, Callable] = {
    "CreateBatch": Allocation.create_batch,
    "Allocate": Allocation.allocate,
    "ChangeBatchQuantity": Allocation.change_batch_quantity,
}
EVENT_HANDLERS: dict[str, list[Callable]] = {
    "BatchCreated": [Allocation.publish],
    "BatchQuantityChanged": [Allocation.publish],
    "Allocated": [Allocation.publish, Allocation.add_to_view],
    "Deallocated": [Allocation.publish, Allocation.remove_from_view, Allocation.reallocate],
    "OutOfStock": [Allocation.publish, Allocation.notify],
}
TOPICS = {  # event type -> the suffix of its topic (<prefix>.events.<suffix>)
    "BatchCreated": "batch_created",
    "BatchQuantityChanged": "batch_quantity_changed",
    "Allocated": "allocated",
    "Deallocated": "deallocated",
    "OutOfStock": "out_of_stock",
}


# ------------------------------------------------------------------------------ selftest


def selftest() -> None:
    def run(*commands) -> tuple[Allocation, list]:
        app, out = Allocation(), []
        for c in commands:
            try:
                out.append(app.handle(c))
            except Rejected as r:
                out.append(r)
        return app, out

    def cb(ref, sku, qty, eta=None):
        return {"type": "CreateBatch", "ref": ref, "sku": sku, "qty": qty, "eta": eta}

    def al(orderid, sku, qty):
        return {"type": "Allocate", "orderid": orderid, "sku": sku, "qty": qty}

    def ch(ref, qty):
        return {"type": "ChangeBatchQuantity", "ref": ref, "qty": qty}

    # The book: warehouse stock first, then the earliest shipment.
    app, out = run(cb("ship", "CLOCK", 100, "2026-01-02"), cb("wh", "CLOCK", 100), al("o", "CLOCK", 10))
    assert out[2] == [event("Allocated", orderid="o", sku="CLOCK", qty=10, batchref="wh")], out
    app, out = run(cb("late", "M", 100, "2026-03-01"), cb("soon", "M", 100, "2026-01-01"),
                   cb("mid", "M", 100, "2026-02-01"), al("o", "M", 10))
    assert out[3][0]["batchref"] == "soon"
    # Ties go to the batch created first; lines are never split; equal is enough.
    app, out = run(cb("a", "T", 5, "2026-01-01"), cb("b", "T", 5, "2026-01-01"), al("o1", "T", 5),
                   al("o2", "T", 5), al("o3", "T", 2))
    assert [e[0]["batchref"] for e in out[2:4]] == ["a", "b"]
    assert out[4] == [event("OutOfStock", sku="T")] and app.products["T"].version == 4
    # Identical line again: no change, no event; a different qty is another line.
    app, out = run(cb("b", "S", 10), al("o", "S", 2), al("o", "S", 2), al("o", "S", 3))
    assert out[2] == [] and out[3][0]["type"] == "Allocated" and app.products["S"].version == 3
    # Unchanged quantity still bumps and emits.
    app, out = run(cb("b", "S", 10), ch("b", 10))
    assert out[1] == [event("BatchQuantityChanged", ref="b", sku="S", qty=10)]
    assert app.products["S"].version == 2
    # The reallocation scenario (tests/e2e/events.sh): o2 moves from b1 to b2.
    app, out = run(cb("b1", "TAB", 50), cb("b2", "TAB", 50, "2031-01-02"), al("o1", "TAB", 20),
                   al("o2", "TAB", 20), ch("b1", 25))
    assert [e["type"] for e in out[4]] == ["BatchQuantityChanged", "Deallocated", "Allocated"]
    assert out[4][2]["batchref"] == "b2" and app.view[("o2", "TAB")] == ["b2"]
    assert app.products["TAB"].version == 6
    # LIFO: several lines leave, newest first, and are reallocated in that order.
    app, out = run(cb("w", "L", 10), al("x", "L", 3), al("y", "L", 3), al("z", "L", 3), ch("w", 4))
    assert [(e["type"], e.get("orderid")) for e in out[4]] == [
        ("BatchQuantityChanged", None), ("Deallocated", "z"), ("Deallocated", "y"),
        ("OutOfStock", None), ("OutOfStock", None)]
    assert app.snapshot()["allocations"] == {"w": [("x", 3)]}
    # A line taken back can land in the shrunk batch again when it fits after the others left.
    app, out = run(cb("w", "K", 12), al("big", "K", 10), al("small", "K", 2), ch("w", 3))
    assert [(e["type"], e.get("orderid"), e.get("batchref")) for e in out[3]] == [
        ("BatchQuantityChanged", None, None), ("Deallocated", "small", "w"),
        ("Deallocated", "big", "w"), ("Allocated", "small", "w"), ("OutOfStock", None, None)]
    # Refusals change nothing.
    app, out = run(al("o", "NOPE", 1), cb("b", "S", 10), cb("b", "S", 10), cb("b", "S", 11),
                   cb("b", "OTHER", 10), ch("zz", 1), al("o", "S", 0), cb("c", "S", 1, "2026-02-30"),
                   al("o" * 256, "S", 1), {"type": "Allocate", "sku": "S", "qty": 1})
    assert out[0].reason == "invalid_sku" and out[0].message == "Invalid sku NOPE"
    assert out[2] == [] and [o.reason for o in out[3:5]] == ["batch_exists"] * 2
    assert out[5].reason == "unknown_batch" and "OTHER" not in app.products
    assert [o.reason for o in out[6:]] == ["invalid_command"] * 4
    assert app.products["S"].version == 1
    print("model selftest: ok")


# ------------------------------------------------------------------------------ generate

ETAS = [None, None, None, None, "2027-01-15", "2027-02-01", "2027-02-01", "2027-03-10",
        "2027-04-30"]


def generate(seed: int, prefix: str, nskus: int, ncommands: int, out) -> None:
    """Writes a stream of "key<TAB>json" lines.

    Every command is keyed so that its outcome depends only on the earlier commands of the
    same key: Allocate and CreateBatch by their sku, ChangeBatchQuantity by its batch's sku
    (an unknown ref by itself), and a CreateBatch that reuses another sku's ref by the sku
    that owns the ref (so it always comes after that batch, and is refused whatever the
    interleaving). Kafka keeps the order per key only; the check verifies this claim by
    running the stream in two different interleavings.

    A model runs alongside only to steer quantities (shrink a batch below its allocations,
    restock a sku that runs dry); every command carries its index as an extra field "n",
    which the processor ignores and the check uses to name commands.
    """
    rng = random.Random(seed)
    app = Allocation()
    stream: list[tuple[str, dict]] = []
    skus = [f"{prefix}-S{i:03d}" for i in range(nskus)]
    weights = [1.0 / (1 + i / 25) for i in range(nskus)]  # a few hot skus, a long tail
    ghosts = [f"{prefix}-GHOST{i}" for i in range(5)]
    nosku = [f"{prefix}-NOSKU{i}" for i in range(10)]
    refs_of: dict[str, list[str]] = {sku: [] for sku in skus}
    lines_of: dict[str, list[dict]] = {sku: [] for sku in skus}
    used_lines: set[tuple[str, str]] = set()
    counter = collections.Counter()

    def emit(key: str, cmd: dict) -> None:
        cmd["n"] = len(stream)
        stream.append((key, cmd))
        try:
            app.handle(cmd)
        except Rejected:
            pass

    def new_ref() -> str:
        counter["ref"] += 1
        return f"{prefix}-b{counter['ref']}"

    def create(sku: str) -> None:
        ref = new_ref()
        refs_of[sku].append(ref)
        emit(sku, {"type": "CreateBatch", "ref": ref, "sku": sku,
                   "qty": rng.randint(20, 120), "eta": rng.choice(ETAS)})

    def new_line(sku: str) -> dict:
        while True:  # one line per (order, sku): an order may span skus
            orderid = f"{prefix}-o{rng.randrange(ncommands // 2)}"
            if (orderid, sku) not in used_lines:
                used_lines.add((orderid, sku))
                break
        qty = rng.randint(1, 10) if rng.random() < 0.92 else rng.randint(15, 60)
        cmd = {"type": "Allocate", "orderid": orderid, "sku": sku, "qty": qty}
        lines_of[sku].append(cmd)
        return cmd

    def extras_after_create(sku: str) -> None:
        """Repeats and conflicts of the creation phase, before any quantity changes."""
        r = rng.random()
        b = app.batches[rng.choice(refs_of[sku])]
        same = {"type": "CreateBatch", "ref": b.ref, "sku": sku, "qty": b.purchased, "eta": b.eta}
        if r < 0.06:
            emit(sku, same)  # identical: a no-op
        elif r < 0.08:
            emit(sku, {**same, "qty": b.purchased + rng.randint(1, 5)})  # batch_exists
        elif r < 0.09:
            emit(sku, {**same, "eta": "2027-06-01" if b.eta is None else None})  # batch_exists
        elif r < 0.10:  # another sku, known or never created: batch_exists, keyed by the owner
            other = rng.choice(ghosts) if rng.random() < 0.5 else rng.choice(skus)
            emit(sku, {**same, "sku": other if other != sku else ghosts[0]})

    def change(sku: str) -> None:
        b = app.batches[rng.choice(refs_of[sku])]
        stock = sum(x.available for x in app.products[sku].batches)
        r = rng.random()
        if stock < 40:
            qty = b.purchased + rng.randint(40, 120)  # restock
        elif r < 0.45 and b.lines:
            qty = max(0, b.allocated - rng.randint(1, 15))  # takes lines back
        elif r < 0.80:
            qty = b.purchased + rng.randint(5, 50)
        elif r < 0.90:
            qty = b.purchased  # unchanged: still a change event
        else:
            qty = rng.randint(0, 100)
        emit(sku, {"type": "ChangeBatchQuantity", "ref": b.ref, "qty": qty})

    def invalid(sku: str) -> None:
        r = rng.random()
        if r < 0.25:
            emit(sku, {"type": "Allocate", "orderid": f"{prefix}-bad", "sku": sku, "qty": 0})
        elif r < 0.5:
            emit(sku, {"type": "Allocate", "sku": sku, "qty": 3})
        elif r < 0.75:
            counter["bad"] += 1
            emit(sku, {"type": "CreateBatch", "ref": f"{prefix}-bad{counter['bad']}", "sku": sku,
                       "qty": 5, "eta": "2027-02-30"})
        else:
            emit(sku, {"type": "Allocate", "orderid": prefix + "-" + "x" * 260, "sku": sku,
                       "qty": 1})

    # Creation phase: every sku gets 1-4 batches, skus interleaved at random.
    pending = [sku for sku in skus for _ in range(rng.choice([1, 2, 2, 3, 3, 4]))]
    rng.shuffle(pending)
    for sku in pending:
        create(sku)
        extras_after_create(sku)

    # The mix.
    while len(stream) < ncommands:
        sku = rng.choices(skus, weights)[0]
        r = rng.random()
        if r < 0.80:
            cmd = new_line(sku)
            emit(sku, dict(cmd))
            if rng.random() < 0.03:
                emit(sku, dict(cmd))  # the identical line twice in a row
        elif r < 0.84 and lines_of[sku]:
            emit(sku, dict(rng.choice(lines_of[sku])))  # an old line again
        elif r < 0.955:
            change(sku)
        elif r < 0.97:
            create(sku)
        elif r < 0.98:
            bad = rng.choice(nosku + ghosts)
            emit(bad, {"type": "Allocate", "orderid": f"{prefix}-o1", "sku": bad, "qty": 1})
        elif r < 0.99:
            counter["unknown"] += 1
            ref = f"{prefix}-nobatch{counter['unknown']}"
            emit(ref, {"type": "ChangeBatchQuantity", "ref": ref, "qty": 5})
        else:
            invalid(sku)

    for key, cmd in stream:
        out.write(f"{key}\t{json.dumps(cmd, separators=(',', ':'))}\n")


# ------------------------------------------------------------------------------ check


def read_stream(path: str) -> list[tuple[str, dict]]:
    with open(path) as f:
        return [(key, json.loads(value)) for key, value in
                (line.rstrip("\n").split("\t", 1) for line in f if line.strip())]


class Expected:
    """What the model says the processor must end with, for a stream in a given order."""

    def __init__(self, stream: Iterable[tuple[str, dict]]):
        app = Allocation()
        self.events: dict[tuple[str, str], list] = collections.defaultdict(list)
        self.rejections: dict[int, tuple[str, str, str]] = {}
        self.outcomes: dict[int, str] = {}
        for key, cmd in stream:
            try:
                published = app.handle(cmd)
            except Rejected as r:
                self.rejections[cmd["n"]] = (cmd["type"], r.reason, r.message)
                self.outcomes[cmd["n"]] = f"rejected {r.reason}"
                continue
            for evt in published:
                self.events[(TOPICS[evt["type"]], evt["sku"])].append((cmd["n"], evt))
            self.outcomes[cmd["n"]] = ", ".join(e["type"] for e in published) or "no-op"
        self.state = app.snapshot()
        self.notifications = len(app.notifications)

    def comparable(self) -> tuple:
        return (self.state, dict(self.events), self.rejections)


class Report:
    def __init__(self, stream, prefix: str, outcomes: dict[int, str]):
        self.prefix = prefix + "-"
        self.failures = 0
        self.by_n = {cmd["n"]: (key, cmd) for key, cmd in stream}
        self.outcomes = outcomes

    def fail(self, what: str, details: list[str], limit: int = 12) -> None:
        self.failures += 1
        print(f"MISMATCH: {what} ({len(details)} difference(s))")
        for d in details[:limit]:
            print("   " + d.replace(self.prefix, "P-"))
        if len(details) > limit:
            print(f"   ... and {len(details) - limit} more")

    def command(self, n) -> str:
        if n not in self.by_n:
            return f"n={n} (unknown command)"
        key, cmd = self.by_n[n]
        return (f"n={n} key={key} {json.dumps({k: v for k, v in cmd.items() if k != 'n'})} "
                f"(model: {self.outcomes[n]})")


def compare_maps(report: Report, what: str, expected: dict, observed: dict) -> None:
    details = []
    for k in sorted(set(expected) | set(observed), key=str):
        e, o = expected.get(k, "<absent>"), observed.get(k, "<absent>")
        if e == o:
            continue
        if isinstance(e, list) and isinstance(o, list):
            i = next((i for i, (a, b) in enumerate(zip(e, o)) if a != b), min(len(e), len(o)))
            details.append(f"{k!r}: {len(e)} expected, {len(o)} found; from #{i}: "
                           f"expected {e[i:i + 3]!r}, found {o[i:i + 3]!r}")
        else:
            details.append(f"{k!r}: expected {e!r}, found {o!r}")
    if details:
        report.fail(what, details)


def read_tsv(path: str) -> list[list[str]]:
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def read_events(path: str, decoder: str) -> list[tuple[int, int, str, dict, dict]]:
    """A topic as kcat -f '%p\\t%o\\t%k\\t%h\\n%R%s' wrote it: (partition, offset, key,
    headers, event) per message in partition and offset order, the values decoded by
    `decoder decode`."""
    with open(path, "rb") as f:
        data = f.read()
    frames, pos = [], 0
    while pos < len(data):
        eol = data.index(b"\n", pos)
        partition, offset, key, headers = data[pos:eol].decode().split("\t", 3)
        (size,) = struct.unpack(">i", data[eol + 1:eol + 5])
        value = data[eol + 5:eol + 5 + size]
        pos = eol + 5 + size
        frames.append((int(partition), int(offset), key,
                       dict(h.split("=", 1) for h in headers.split(",") if "=" in h), value))
    frames.sort(key=lambda frame: frame[:2])
    values = b"".join(struct.pack(">i", len(v)) + v for *_, v in frames)
    done = subprocess.run([decoder, "decode"], input=values, capture_output=True, check=False)
    lines = done.stdout.decode().splitlines()
    if done.returncode != 0 or len(lines) != len(frames):
        raise SystemExit(f"{path}: {len(frames)} messages, {len(lines)} decoded "
                         f"(exit {done.returncode}): {done.stderr.decode()[-500:]}")
    return [(p, o, k, h, json.loads(line)) for (p, o, k, h, _), line in zip(frames, lines)]


def check(prefix: str, stream_path: str, dump: str, decoder: str) -> int:
    stream = read_stream(stream_path)
    # The model, twice: in file order and grouped by key. Both are interleavings Kafka might
    # deliver; if they disagreed the stream would not be deterministic (a generator bug).
    expected = Expected(stream)
    report = Report(stream, prefix, expected.outcomes)
    print(f"model check: names below drop the test's prefix: P- stands for {prefix}-")
    by_key = collections.defaultdict(list)
    for key, cmd in stream:
        by_key[key].append((key, cmd))
    regrouped = Expected(c for key in sorted(by_key) for c in by_key[key])
    if regrouped.comparable() != expected.comparable():
        print("INTERNAL ERROR: the model's result depends on how keys interleave; fix generate()")
        return 2

    # The input topic must hold the stream exactly once, in per-key order, or the model's
    # expectations would not apply (that would be the producer's fault, not the processor's).
    where: dict[tuple[int, int], int] = {}
    key_of: dict[int, str] = {}
    seen_per_key: dict[str, list[int]] = collections.defaultdict(list)
    for partition, offset, key, value in read_tsv(f"{dump}/command_topic.tsv"):
        n = json.loads(value)["n"]
        where[(int(partition), int(offset))] = n
        key_of[n] = key
        seen_per_key[key].append(n)
    want_per_key = {key: [c["n"] for _, c in cmds] for key, cmds in by_key.items()}
    if dict(seen_per_key) != want_per_key:
        print("INPUT ERROR: the command topic does not hold the stream once in per-key order")
        return 2

    # Postgres: the write model and the read model.
    state = expected.state
    products = {sku: int(v) for sku, v in read_tsv(f"{dump}/products.tsv")}
    compare_maps(report, "products.version_number", state["products"], products)
    batches = {ref: (sku, int(qty), eta or None) for ref, sku, qty, eta in read_tsv(f"{dump}/batches.tsv")}
    compare_maps(report, "batches (sku, purchased_quantity, eta)", state["batches"], batches)
    allocations = collections.defaultdict(list)
    for ref, orderid, qty in read_tsv(f"{dump}/allocations.tsv"):
        allocations[ref].append((orderid, int(qty)))
    compare_maps(report, "allocations per batch, in allocation order", state["allocations"],
                 dict(allocations))
    view = collections.defaultdict(list)
    for orderid, sku, batchref in read_tsv(f"{dump}/view.tsv"):
        view[(orderid, sku)].append(batchref)
    compare_maps(report, "allocations_view rows per (order, sku), in id order", state["view"],
                 dict(view))

    # Kafka: per topic and sku, the first delivery of every event-id, in partition order.
    observed_events: dict[tuple[str, str], list] = collections.defaultdict(list)
    rejections: dict[int, list] = collections.defaultdict(list)
    messages = collections.Counter()
    duplicates = collections.Counter()
    problems = []
    for topic in list(TOPICS.values()) + ["command_rejected"]:
        values_of: dict[str, tuple] = {}
        partitions_of: dict[str, set] = collections.defaultdict(set)
        for partition, offset, key, headers, evt in read_events(f"{dump}/events/{topic}.bin", decoder):
            eid = headers.get("event-id", "")
            cause = headers.get("causation-id", "")
            n = where.get(tuple(int(x) for x in cause.rsplit("/", 2)[1:]), cause) \
                if cause.count("/") >= 2 else cause
            messages[topic] += 1
            want_key = key_of.get(n) if topic == "command_rejected" else evt.get("sku")
            if not eid or key != want_key:
                problems.append(f"{topic} [{partition}] @{offset}: key {key!r} (expected "
                                f"{want_key!r}), event-id {eid!r}, caused by {report.command(n)}")
            partitions_of[key].add(partition)
            if eid in values_of:
                duplicates[topic] += 1
                if values_of[eid] != (n, evt):
                    problems.append(f"{topic}: event-id {eid} delivered as {values_of[eid]} "
                                    f"and again as {(n, evt)}")
                continue
            values_of[eid] = (n, evt)
            if topic == "command_rejected":
                src = (evt.get("source_partition"), evt.get("source_offset"))
                rejections[where.get(src, f"{evt.get('source_topic')}/{src}")].append((n, evt))
            else:
                observed_events[(topic, evt.get("sku"))].append((n, evt))
        problems += [f"{topic}: key {key!r} on partitions {sorted(ps)}"
                     for key, ps in partitions_of.items() if len(ps) > 1]
    if problems:
        report.fail("event headers, keys and re-deliveries (an event-id stands for one event, "
                    "a key for one partition)", problems)

    details = []
    for key in sorted(set(expected.events) | set(observed_events)):
        want, got = expected.events.get(key, []), observed_events.get(key, [])
        if want != got:
            i = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
            d = [f"{key[0]} for {key[1]}: {len(want)} expected, {len(got)} first deliveries; "
                 f"first difference at #{i}:"]
            for label, seq in (("expected", want), ("found   ", got)):
                for n, evt in seq[max(0, i - 1):i + 2]:
                    d.append(f"      {label} {json.dumps(evt)} caused by {report.command(n)}")
            details.append("\n".join(d))
    if details:
        report.fail("events per topic and sku (first deliveries, in partition order)", details, 6)

    details = []
    for n in sorted(set(expected.rejections) | set(rejections), key=str):
        want = expected.rejections.get(n)
        got = rejections.get(n, [])
        gist = [(e.get("command_type"), e.get("reason"),
                 e.get("message") if e.get("reason") == "invalid_sku" else "") for _, e in got]
        if want is None:
            details.append(f"unexpected rejection {gist} of {report.command(n)}")
        elif gist != [(want[0], want[1], want[2] if want[1] == "invalid_sku" else "")]:
            details.append(f"{report.command(n)}: expected {want[:2]}, found {gist}")
        elif got[0][0] != n:
            details.append(f"{report.command(n)}: rejection's causation-id names {got[0][0]}")
    if details:
        report.fail("CommandRejected per command", details)

    dead = int(open(f"{dump}/dead_letter.count").read().strip() or 0)
    if dead:
        report.fail("dead letters", [f"{dead} message(s) on the dead-letter topic, expected none"])

    # Summary.
    types = collections.Counter(cmd["type"] for _, cmd in stream)
    expected_counts = collections.Counter()
    for seq in expected.events.values():
        for _, evt in seq:
            expected_counts[evt["type"]] += 1
    reasons = collections.Counter(r[1] for r in expected.rejections.values())
    print(f"model: {len(stream)} commands ({', '.join(f'{v} {k}' for k, v in sorted(types.items()))})")
    print(f"model: {sum(expected_counts.values())} events expected "
          f"({', '.join(f'{v} {k}' for k, v in sorted(expected_counts.items()))}); "
          f"{len(expected.rejections)} rejections ({', '.join(f'{v} {k}' for k, v in sorted(reasons.items()))})")
    print(f"model: {len(state['products'])} products, versions summing to "
          f"{sum(state['products'].values())}, {len(state['batches'])} batches, "
          f"{sum(len(v) for v in state['allocations'].values())} lines allocated")
    print(f"kafka: {sum(messages.values())} event messages read, "
          f"{sum(duplicates.values())} re-deliveries with the same event-id "
          f"({', '.join(f'{v} {k}' for k, v in sorted(duplicates.items())) or 'none'})")
    if report.failures:
        print(f"model check: {report.failures} kind(s) of mismatch")
        return 1
    print("model check: Postgres and every event topic match the model")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("selftest")
    g = sub.add_parser("generate")
    g.add_argument("--seed", type=int, required=True)
    g.add_argument("--prefix", required=True)
    g.add_argument("--skus", type=int, default=200)
    g.add_argument("--commands", type=int, default=21000)
    c = sub.add_parser("check")
    c.add_argument("--prefix", required=True)
    c.add_argument("--commands", required=True)
    c.add_argument("--dump", required=True)
    c.add_argument("--decoder", required=True, help="the allocation-processor binary")
    args = parser.parse_args()
    if args.command == "selftest":
        selftest()
        return 0
    if args.command == "generate":
        generate(args.seed, args.prefix, args.skus, args.commands, sys.stdout)
        return 0
    return check(args.prefix, args.commands, args.dump, args.decoder)


if __name__ == "__main__":
    sys.exit(main())

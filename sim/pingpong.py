"""Ping-pong execution of a mapper's RUNs on stores of two banks (`TesseraDriver` with
``overlap``): the mapper issues the same writes, RUNs and reads it issues one after another,
and `PingPong` places them in banks so that transfers overlap the array.

The rules (every store the mapper touches has two banks, `PingPong.possible`):

* An operand or parameter store's first write after a RUN goes to the bank the running RUN
  does not read (each store flips on its own: a store written once and read by many RUNs,
  like a tree's weights over its row blocks, stays where it is until it is written again).
* A RUN names, per store, the bank of that store's latest data; result stores take the
  block's bank (block ``j``, the RUNs between two `read` calls, on bank ``j % 2``).
* A RUN is sent while the one before executes (the core holds it and starts it the cycle
  that one completes, and answers then); once it has started, a STATUS fetches the previous
  RUN's cycles (``prev_cycles``) and the finished block's results are read from the other
  bank. `finish` waits for the last RUN and reads the last block.

Each RUN computes on exactly the data it would one after another, so results and each
RUN's cycles equal the sequential schedule's; the messages differ only in addresses, the
RUN header's banks and one STATUS per RUN after the first.
"""

__all__ = ["PingPong", "Sequential", "counter", "executor"]


class PingPong:
    """One layer (or GEMM) of RUNs on banked stores.

    Parameters
    ----------
    drv : TesseraDriver
    geometry : Geometry
        The core's stores (`tessera.hdl.ctrl.memmap`).
    count : callable
        ``count(cycles)`` for each RUN, in RUN order (the mapper's statistics).
    """

    def __init__(self, drv, geometry, count):
        self.drv, self.count = drv, count
        self.stores = {s.name: s for s in geometry.stores}
        self.cur = {}            # operand/parameter store -> bank of its latest data
        self.written = set()     # stores written since the last RUN
        self.block = 0           # result bank of the current block: block % 2
        self.started = 0         # RUNs sent
        self.pending = []        # reads of the finished block: (store, addr, count, done)

    @staticmethod
    def possible(drv, geometry, stores):
        """Whether ``drv`` allows overlap and every store in ``stores`` (the operand and
        parameter stores a schedule writes) and every result store has two banks."""
        if not getattr(drv, "overlap", False):
            return False
        need = set(stores) | {s.name for s in geometry.stores if s.result}
        return all(geometry.store(n).banks == 2 for n in need)

    def _store(self, name):
        s = self.stores[name]
        if s.banks != 2:
            raise ValueError(f"ping-pong: store {name!r} has {s.banks} bank(s); every store "
                             f"a ping-pong schedule touches needs 2")
        return s

    async def write(self, store, addr, words):
        """Write ``words`` at word ``addr`` of ``store``'s next bank (the running RUN reads
        the other)."""
        s = self._store(store)
        if s.result:
            raise ValueError(f"ping-pong: store {store!r} is a result store; write operands")
        if store not in self.written:
            self.cur[store] = 1 - self.cur.get(store, 1)
            self.written.add(store)
        await self.drv.write(store, self.cur[store] * s.depth + addr, words)

    async def run(self, **fields):
        """Send RUN ``fields`` on the latest operand banks and the block's result banks, then
        (once it started) count the previous RUN and read the finished block."""
        banks = 0
        for name, s in self.stores.items():
            if s.result or name in self.cur:
                self._store(name)
                bank = self.block % 2 if s.result else self.cur[name]
                banks |= bank << s.id
        await self.drv.start(banks=banks, **fields)
        if self.started:
            self.count((await self.drv.status()).prev_cycles)
        self.started += 1
        self.written.clear()
        await self._flush()

    async def read(self, store, addr, count, done):
        """Read ``count`` words at ``addr`` of result ``store`` in the current block's bank
        once its RUNs have completed: ``done(words)`` is called then (after the next RUN has
        started, or in `finish`). The block goes on until `end_block`."""
        s = self._store(store)
        if not s.result:
            raise ValueError(f"ping-pong: read {store!r}: only result stores are read")
        self.pending.append((store, (self.block % 2) * s.depth + addr, count, done))

    def end_block(self):
        """Close the current block (after its `read` calls): later RUNs use the other
        result bank."""
        self.block += 1

    async def _flush(self):
        todo, self.pending = self.pending, []
        for store, addr, count, done in todo:
            done(await self.drv.read(store, addr, count))

    async def finish(self):
        """Wait for the last RUN (its cycles counted) and read the last block."""
        if self.started:
            self.count((await self.drv.wait()).cycles)
        await self._flush()


class Sequential:
    """One RUN after another, with `PingPong`'s interface: each write and read at its
    address, each RUN waited for before the next message, ``done(words)`` of a read at once
    (the path of one-bank cores and drivers without ``overlap``)."""

    def __init__(self, drv, count):
        self.drv, self.count = drv, count

    async def write(self, store, addr, words):
        await self.drv.write(store, addr, words)

    async def run(self, **fields):
        self.count(await self.drv.run(**fields))

    async def read(self, store, addr, count, done):
        done(await self.drv.read(store, addr, count))

    def end_block(self):
        """Nothing to switch: every block uses the same addresses."""

    async def finish(self):
        """Nothing outstanding: every RUN was waited for."""


def executor(overlap, drv, geometry, count):
    """`PingPong` when ``overlap`` (the mapper's ``overlaps(drv, ...)``), else `Sequential`:
    a mapper issues the same writes, RUNs and reads through either."""
    return PingPong(drv, geometry, count) if overlap else Sequential(drv, count)


def counter(stats, progress=None):
    """``count(cycles)``: one RUN's cycles into ``stats`` (``runs``, ``cycles``,
    ``run_cycles``), then ``progress(stats)``."""
    def count(cyc):
        stats.runs += 1
        stats.cycles += cyc
        stats.run_cycles.append(cyc)
        if progress:
            progress(stats)
    return count

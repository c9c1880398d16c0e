"""Host driver: speaks the command protocol to a core over any transport.

The same code drives the golden model (`tessera.sim.core.GoldenTransport`), the RTL under cocotb
(`tessera.tb.drivers.CocotbByteTransport`) and a board (`tessera.fpga.link.UartTransport`). A
transport has three async methods: ``send(data)``, ``recv(n) -> bytes`` and ``idle(cycles)``.

The driver is the protocol client only (INFO, STATUS, WRITE, READ, RUN and, on a core that has
them, COUNTERS, from the command table);
mapping a layer onto RUNs is the engine's host-side mapper (``cfg.engine.mapper()``), which
`TesseraDriver.gemm` calls.
"""

from dataclasses import dataclass, field

import numpy as np

from tessera.hdl.ctrl.protocol import (COUNTER_NAMES, COUNTERS_BYTES, CoreInfo, ERROR_TEXT, Err,
                                       Op, STATUS_BYTES, VERSION, command)
from tessera.sim.layout import pack_words, unpack_words


__all__ = ["TesseraError", "CoreStatus", "Counters", "GemmStats", "TesseraDriver",
           "VersionError", "breakdown_lines"]


class TesseraError(RuntimeError):
    """The core answered a command with an error code."""

    def __init__(self, command, code):
        self.command, self.code = command, code
        text = ERROR_TEXT.get(code, f"undocumented error code {code}")
        super().__init__(f"{command}: core error {code}: {text}")


class VersionError(RuntimeError):
    """The core speaks another command-set version, or is not the core the config describes."""


@dataclass(frozen=True)
class CoreStatus:
    busy: bool
    last_error: int
    cycles: int
    #: Busy cycles of the RUN before the current (or last) one.
    prev_cycles: int = 0


@dataclass(frozen=True)
class Counters:
    """Cycles by cause (`protocol.COUNTER_NAMES`), from COUNTERS: cumulative since reset, or
    the difference of two readings (``later - earlier``, modulo 2**32 per cause)."""
    idle: int
    check: int
    compute: int
    other: int
    data: int = 0

    def __sub__(self, earlier):
        return Counters(*((getattr(self, n) - getattr(earlier, n)) % (1 << 32)
                          for n in COUNTER_NAMES))

    def __add__(self, other):
        return Counters(*(getattr(self, n) + getattr(other, n) for n in COUNTER_NAMES))

    def as_dict(self):
        return {n: getattr(self, n) for n in COUNTER_NAMES}

    @property
    def busy(self):
        """Cycles a RUN executed (check + compute + other)."""
        return self.check + self.compute + self.other

    @property
    def total(self):
        return self.idle + self.data + self.busy

    def breakdown(self):
        """``[(cause, cycles, share of the total)]`` in the TPU paper's style: the array
        computing, the RUNs' other cycles (fill, drain, bubbles, combiner, epilogue), the
        argument checks, and the time no RUN executes: receiving a WRITE (waiting for data)
        or otherwise (the core waits on the host: commands, polls, host code)."""
        tot = self.total or 1
        rows = [("array computing", self.compute), ("fill, drain, bubbles", self.other),
                ("argument check", self.check), ("waiting for data", self.data),
                ("waiting on the host", self.idle)]
        return [(name, v, v / tot) for name, v in rows]


def breakdown_lines(rows, per=1):
    """The per-layer cycles-by-cause table (TPU-paper style) as text lines.

    Parameters
    ----------
    rows : list of (index, name, Counters)
        One per on-chip layer (its COUNTERS difference).
    per : int
        Divide the cycle counts by this (images) for the last column.
    """
    if not rows:
        return []
    names = [b[0] for b in rows[0][2].breakdown()]
    lines = ["cycles by cause (COUNTERS, share of each layer's cycles on the core, host waits "
             "included):",
             f"{'#':>2}  {'layer':<26} " + " ".join(f"{n:>20}" for n in names)
             + f" {'cycles/image':>13}"]
    total = None
    for index, name, c in rows:
        lines.append(f"{index:>2}  {name:<26} "
                     + " ".join(f"{100 * s:>19.1f}%" for _, _, s in c.breakdown())
                     + f" {c.total / per:>13,.0f}")
        total = c if total is None else total + c
    lines.append(f"{'':>2}  {'all layers':<26} "
                 + " ".join(f"{100 * s:>19.1f}%" for _, _, s in total.breakdown())
                 + f" {total.total / per:>13,.0f}")
    if total.busy:
        lines.append(f"array computing over the RUNs' own cycles (the host excluded): "
                     f"{100 * total.compute / total.busy:.1f}%")
    return lines


@dataclass
class GemmStats:
    """What a GEMM cost: RUN commands issued and engine cycles (host transfers excluded)."""
    runs: int = 0
    cycles: int = 0
    run_cycles: list = field(default_factory=list)
    k_split: int = 0


class TesseraDriver:
    """Async host API of a tessera core.

    Parameters
    ----------
    transport
        Object with async ``send``, ``recv`` and ``idle``.
    cfg : CoreConfig or None
        The config the core was generated from: `connect` checks that INFO matches it, and
        `gemm` uses its engine's mapper. Without it INFO, STATUS, READ and WRITE work from INFO
        alone (stores by the names INFO reports); RUN needs the engine's argument layout.
    poll_cycles : int
        Idle cycles between STATUS polls while a RUN executes.
    count_causes : bool
        With a core that has COUNTERS, `run_layer` reads them before and after each layer and
        keeps the difference in its `LayerStats` (``counters``).
    resident : bool
        Keep a mirror of what this driver wrote to the host-written stores (operand and
        parameter roles: the core never writes them) and send, of each write, only the span
        from its first to its last word that differs from the mirror (none if all are equal),
        in one WRITE as before: weights already on chip stay there across batches and images,
        and no write becomes more commands (``elided_words`` counts what was not sent). `connect` forgets the mirror; a WRITE the
        core refuses forgets its region. Only safe while this driver is the only writer of the
        core (no other host, no reconfiguration between its commands).
    overlap : bool
        Let the mappers run ping-pong on a core whose stores have two banks (``<store>_banks
        = 2``): each RUN is sent while the one before executes, the next tiles are written and
        the finished results read while the array computes (every engine's mapper: its
        ``overlaps``; the banks are `tessera.sim.pingpong.PingPong`'s). Results
        and each RUN's cycles are those of the one-after-another schedule.
    """

    def __init__(self, transport, cfg=None, *, poll_cycles=64, count_causes=False,
                 resident=False, overlap=True):
        self.t = transport
        self.cfg = cfg
        self.poll_cycles = poll_cycles
        self.count_causes = bool(count_causes)
        self.resident = bool(resident)
        self.overlap = bool(overlap)
        self.elided_words = 0
        self._mirror = {}            # store name -> (depth x lanes codes, known mask)
        #: ``(base, words)``: the region of store B the next layer's weights go to
        #: (`tessera.sim.qnet.weight_regions` sets it per layer), None: from word 0.
        self.b_region = None
        self.info = None

    async def _status_byte(self, command):
        (code,) = await self.t.recv(1)
        if code != Err.OK:
            raise TesseraError(command, code)

    async def connect(self):
        """Read INFO, check the command-set version and (with a config) the core's identity.

        Returns
        -------
        CoreInfo
            Also kept as ``self.info``: the engine, layer types, PE kind, formats, epilogue
            capabilities and every store (``info.stores_by_name``), so a driver without a
            config can address the core's stores by name.

        Raises
        ------
        VersionError
            The core speaks another command-set version (one line: what each side speaks and
            what to do), or, with a config, the core's INFO differs from ``cfg.core_info()``
            (one line naming the fields that differ).
        """
        await self.t.send(bytes([Op.INFO]))
        await self._status_byte("INFO")
        version = (await self.t.recv(1))[0]
        if version != VERSION:
            raise VersionError(f"the core speaks command set v{version} and this driver "
                               f"v{VERSION}; regenerate the core (or its bitstream) with this "
                               f"tessera, or drive it with the tessera that generated it")
        head = await self.t.recv(2)
        n = int.from_bytes(head, "little")
        self.info = CoreInfo.unpack(bytes([version]) + head + await self.t.recv(n))
        self._mirror = {}
        if self.cfg is not None:
            want = self.cfg.core_info()
            if want != self.info:
                diff = self.info.differences(want)
                more = f" and {len(diff) - 4} more" if len(diff) > 4 else ""
                raise VersionError(f"the core is not the one the config {self.cfg.source} "
                                   f"describes (core != config): {'; '.join(diff[:4])}{more}")
        return self.info

    def _store(self, spad):
        """The INFO `StoreInfo` of store ``spad``: a name (as INFO names it) or an id."""
        if self.info is None:
            raise RuntimeError(f"store {spad!r}: connect() first (the stores come from INFO)")
        try:
            return self.info.store(spad)
        except KeyError as e:
            raise KeyError(f"store {spad!r}: {e.args[0]}") from None

    async def status(self):
        await self.t.send(bytes([Op.STATUS]))
        await self._status_byte("STATUS")
        p = await self.t.recv(STATUS_BYTES - 1)
        return CoreStatus(busy=bool(p[0] & 1), last_error=p[1],
                          cycles=int.from_bytes(p[2:6], "little"),
                          prev_cycles=int.from_bytes(p[6:10], "little"))

    async def counters(self):
        """The core's cycle counters (COUNTERS): a `Counters` of the cycles since reset.

        Raises
        ------
        RuntimeError
            The core was built without them (INFO capability CAP_COUNTERS; config
            ``core.counters``).
        """
        if self.info is None:
            await self.connect()             # INFO says whether the core has them
        if not self.info.has_counters:
            raise RuntimeError("COUNTERS: this core was built without cycle counters "
                               "(config core.counters = false)")
        await self.t.send(bytes([Op.COUNTERS]))
        await self._status_byte("COUNTERS")
        raw = await self.t.recv(COUNTERS_BYTES - 1)
        return Counters(*(int.from_bytes(raw[4 * i:4 * i + 4], "little")
                          for i in range(len(COUNTER_NAMES))))

    async def write(self, spad, addr, lanes):
        """Write words (n x lanes unsigned codes) to store ``spad`` (name or id)."""
        if self.info is None:
            await self.connect()
        s = self._store(spad)
        lanes = np.asarray(lanes)
        if lanes.ndim != 2 or lanes.shape[1] != s.lanes:
            raise ValueError(f"write to {spad}: expected n x {s.lanes} lanes, got {lanes.shape}")
        if self.resident and s.role != "result" and 0 <= addr and addr + len(lanes) <= s.words:
            await self._write_changed(spad, s, addr, lanes)
            return
        await self._write_words(spad, s, addr, lanes)

    async def _write_words(self, spad, s, addr, lanes):
        header = bytes([Op.WRITE]) + command(Op.WRITE).args.pack(spad=s.id, addr=addr,
                                                                  count=len(lanes))
        await self.t.send(header + pack_words(lanes, s.lane_bits))
        await self._status_byte(f"WRITE {spad}[{addr}:{addr + len(lanes)}]")

    async def _write_changed(self, spad, s, addr, lanes):
        """`write` with the resident mirror: only the span of words that differ from it."""
        codes, known = self._mirror.setdefault(
            s.name, (np.zeros((s.words, s.lanes), dtype=np.uint64),
                     np.zeros(s.words, dtype=bool)))
        new = np.asarray(lanes).astype(np.uint64)
        end = addr + len(new)
        same = known[addr:end] & np.all(codes[addr:end] == new, axis=1)
        changed = np.flatnonzero(~same)
        # One WRITE at most (a command is a round trip on the link: splitting costs more than
        # the unchanged words inside the span).
        runs = [(changed[0], changed[-1] + 1)] if len(changed) else []
        for lo, hi in runs:
            lo, hi = int(lo), int(hi)
            known[addr + lo:addr + hi] = False        # unknown until the core says OK
            await self._write_words(spad, s, addr + lo, new[lo:hi])
            codes[addr + lo:addr + hi] = new[lo:hi]
            known[addr + lo:addr + hi] = True
        self.elided_words += len(new) - sum(hi - lo for lo, hi in runs)

    async def read(self, spad, addr, count):
        """Read ``count`` words of store ``spad``; returns count x lanes codes."""
        if self.info is None:
            await self.connect()
        s = self._store(spad)
        await self.t.send(bytes([Op.READ]) + command(Op.READ).args.pack(spad=s.id, addr=addr,
                                                                          count=count))
        await self._status_byte(f"READ {spad}[{addr}:{addr + count}]")
        data = await self.t.recv(count * s.word_bytes)
        return unpack_words(data, s.lanes, s.lane_bits)

    async def start(self, *, banks=0, chain=0, **fields):
        """Send RUN with the engine's argument ``fields`` (missing fields are 0) on ``banks``
        (bit i: the bank of store i); returns once the core started it (raises `TesseraError`
        on a rejected RUN). Sent while a RUN executes, the core holds it and starts it (and
        answers) in the cycle that RUN completes. ``chain``: 0, or the id + 1 of the chain
        target store the epilogue's outputs go to instead of the result store."""
        if self.cfg is None:
            raise RuntimeError("RUN needs the core's config (TesseraDriver(transport, cfg))")
        layout = self.cfg.engine.args()
        head = command(Op.RUN).args.pack(engine=fields.pop("engine", self.info.engine),
                                         banks=banks, chain=chain)
        await self.t.send(bytes([Op.RUN]) + head + layout.pack(**fields))
        await self._status_byte("RUN " + ", ".join(f"{k}={v}" for k, v in fields.items()))

    async def wait(self):
        """Poll STATUS until the core is idle; returns the final status (with cycles)."""
        while True:
            st = await self.status()
            if not st.busy:
                return st
            await self.t.idle(self.poll_cycles)

    async def run(self, *, banks=0, chain=0, **fields):
        """RUN and wait; returns the RUN's cycle count."""
        await self.start(banks=banks, chain=chain, **fields)
        return (await self.wait()).cycles

    async def run_layer(self, layer, x, w=None, bias=None, *, raw=False, mode=None,
                        progress=None, epilogue=None):
        """Run one layer (`tessera.sim.layers`) on the core: values in, values out (codes with
        ``raw=True``). See `tessera.sim.lowering.run_layer`."""
        from tessera.sim.lowering import run_layer
        if self.info is None:
            await self.connect()
        return await run_layer(self, layer, x, w, bias, raw=raw, mode=mode, progress=progress,
                               epilogue=epilogue)

    async def gemm(self, a, b, *, progress=None, mode=None, epilogue=None):
        """Compute ``a @ b`` on the core (element codes in, result codes out) with the engine's
        mapper, blocking to fit the scratchpads. Returns (M x N result codes, `GemmStats`).
        ``epilogue``: on-chip epilogue parameters (cores that build one; the results are then
        the epilogue's operand-width codes, see the engine's mapper)."""
        if self.info is None:
            await self.connect()
        extra = {} if epilogue is None else {"epilogue": epilogue}
        return await self.cfg.engine.mapper().gemm(self, a, b, progress=progress, mode=mode,
                                                   **extra)

"""Host driver: speaks the command protocol to a core over any transport.

The same code drives the golden model (`tessera.sim.core.GoldenTransport`), the RTL under cocotb
(`tessera.tb.drivers.CocotbByteTransport`) and a board (`tessera.fpga.link.UartTransport`). A transport has three
async methods: ``send(data)``, ``recv(n) -> bytes`` and ``idle(cycles)``.
"""

from dataclasses import dataclass, field

import numpy as np

from tessera.hdl.ctrl.protocol import (ERROR_TEXT, Err, FLAG_ACCUMULATE, INFO_BYTES, Op, PE_CODES,
                               SPAD_IDS, STATUS_BYTES, VERSION)
from tessera.sim.layout import pack_words, tile_a, tile_b, unpack_words, untile_c


__all__ = ["TesseraError", "CoreInfo", "CoreStatus", "GemmStats", "TesseraDriver",
           "plan_gemm"]


class TesseraError(RuntimeError):
    """The core answered a command with an error code."""

    def __init__(self, command, code):
        self.command, self.code = command, code
        text = ERROR_TEXT.get(code, f"undocumented error code {code}")
        super().__init__(f"{command}: core error {code}: {text}")


@dataclass(frozen=True)
class CoreInfo:
    version: int
    rows: int
    cols: int
    a_width: int
    b_width: int
    acc_width: int
    pe_kind: str
    pe_latency: int
    depths: tuple
    accumulate: bool

    def word_bytes(self, spad):
        lanes, bits = {"a": (self.rows, self.a_width), "b": (self.cols, self.b_width),
                       "c": (self.cols, self.acc_width)}[spad]
        return (lanes * bits + 7) // 8

    def lanes(self, spad):
        return {"a": (self.rows, self.a_width), "b": (self.cols, self.b_width),
                "c": (self.cols, self.acc_width)}[spad]


@dataclass(frozen=True)
class CoreStatus:
    busy: bool
    last_error: int
    cycles: int


@dataclass
class GemmStats:
    """What a GEMM cost: RUN commands issued and array cycles (host transfers excluded)."""
    runs: int = 0
    cycles: int = 0
    run_cycles: list = field(default_factory=list)


def plan_gemm(m, n, k, info):
    """Split an M x N x K GEMM into RUNs that fit the scratchpads.

    Returns ``(m_tiles_per_run, n_tiles_per_run, k_per_run)``: the largest blocking (preferring
    the whole K, then as many tiles as fit) such that A, B and C regions fit their scratchpads.
    Raises ValueError if not even one tile with one K step fits.
    """
    R, C = info.rows, info.cols
    da, db, dc = info.depths
    mt_all, nt_all = -(-m // R), -(-n // C)
    kc = min(k, da, db)
    if not info.accumulate and kc < k:
        raise ValueError(f"K={k} does not fit scratchpads of depth {da}/{db} and this core "
                         f"cannot accumulate across RUNs")
    if dc < R or kc < 1:
        raise ValueError(f"scratchpad C (depth {dc}) cannot hold one {R}-row tile")
    mt = max(1, min(mt_all, da // kc))
    nt = max(1, min(nt_all, db // kc, (dc // R) // mt))
    mt = max(1, min(mt, (dc // R) // nt))
    return mt, nt, kc


class TesseraDriver:
    """Async host API of a tessera core.

    Parameters
    ----------
    transport
        Object with async ``send``, ``recv`` and ``idle``.
    poll_cycles : int
        Idle cycles between STATUS polls while a RUN executes.
    """

    def __init__(self, transport, *, poll_cycles=64):
        self.t = transport
        self.poll_cycles = poll_cycles
        self.info = None

    async def _status_byte(self, command):
        (code,) = await self.t.recv(1)
        if code != Err.OK:
            raise TesseraError(command, code)

    async def connect(self):
        """Read INFO and check the command-set version."""
        await self.t.send(bytes([Op.INFO]))
        await self._status_byte("INFO")
        p = await self.t.recv(INFO_BYTES - 1)
        kinds = {v: k for k, v in PE_CODES.items()}
        self.info = CoreInfo(
            version=p[0], rows=p[1], cols=p[2], a_width=p[3], b_width=p[4], acc_width=p[5],
            pe_kind=kinds.get(p[6], f"code{p[6]}"), pe_latency=p[7],
            depths=tuple(int.from_bytes(p[8 + 2 * i:10 + 2 * i], "little") for i in range(3)),
            accumulate=bool(p[14] & 1))
        if self.info.version != VERSION:
            raise RuntimeError(f"core speaks command set v{self.info.version}, "
                               f"driver v{VERSION}")
        return self.info

    async def status(self):
        await self.t.send(bytes([Op.STATUS]))
        await self._status_byte("STATUS")
        p = await self.t.recv(STATUS_BYTES - 1)
        return CoreStatus(busy=bool(p[0] & 1), last_error=p[1],
                          cycles=int.from_bytes(p[2:6], "little"))

    async def write(self, spad, addr, lanes):
        """Write words (n x lanes unsigned codes) to scratchpad ``spad`` ('a'/'b'/'c')."""
        n_lanes, bits = self.info.lanes(spad)
        lanes = np.asarray(lanes)
        if lanes.ndim != 2 or lanes.shape[1] != n_lanes:
            raise ValueError(f"write to {spad}: expected n x {n_lanes} lanes, got {lanes.shape}")
        header = bytes([Op.WRITE, SPAD_IDS[spad]]) + addr.to_bytes(2, "little") \
            + len(lanes).to_bytes(2, "little")
        await self.t.send(header + pack_words(lanes, bits))
        await self._status_byte(f"WRITE {spad}[{addr}:{addr + len(lanes)}]")

    async def read(self, spad, addr, count):
        """Read ``count`` words of scratchpad ``spad``; returns count x lanes codes."""
        n_lanes, bits = self.info.lanes(spad)
        await self.t.send(bytes([Op.READ, SPAD_IDS[spad]]) + addr.to_bytes(2, "little")
                          + count.to_bytes(2, "little"))
        await self._status_byte(f"READ {spad}[{addr}:{addr + count}]")
        data = await self.t.recv(count * self.info.word_bytes(spad))
        return unpack_words(data, n_lanes, bits)

    async def start(self, *, m_tiles, n_tiles, k, a_addr=0, b_addr=0, c_addr=0,
                    accumulate=False):
        """Send RUN; returns once the core accepted it (raises on a rejected RUN)."""
        args = b"".join(x.to_bytes(2, "little")
                        for x in (m_tiles, n_tiles, k, a_addr, b_addr, c_addr))
        flags = FLAG_ACCUMULATE if accumulate else 0
        await self.t.send(bytes([Op.RUN]) + args + bytes([flags]))
        await self._status_byte(f"RUN {m_tiles}x{n_tiles} tiles, k={k}")

    async def wait(self):
        """Poll STATUS until the core is idle; returns the final status (with cycles)."""
        while True:
            st = await self.status()
            if not st.busy:
                return st
            await self.t.idle(self.poll_cycles)

    async def run(self, **kw):
        """RUN and wait; returns the RUN's cycle count."""
        await self.start(**kw)
        return (await self.wait()).cycles

    async def gemm(self, a, b, *, progress=None):
        """Compute ``a @ b`` on the core (codes in, codes out), blocking to fit scratchpads.

        ``a`` is M x K and ``b`` is K x N, unsigned codes of the core's operand formats (use
        `tessera.sim.intmac.to_codes` for signed integers). Returns (M x N result codes, `GemmStats`).
        """
        if self.info is None:
            await self.connect()
        info = self.info
        a = np.asarray(a, dtype=np.uint64)
        b = np.asarray(b, dtype=np.uint64)
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
            raise ValueError(f"gemm: shapes {a.shape} and {b.shape} do not chain (M x K, K x N)")
        m, k = a.shape
        n = b.shape[1]
        R, C = info.rows, info.cols
        mp, np_ = -(-m // R) * R, -(-n // C) * C
        a_p = np.zeros((mp, k), dtype=np.uint64)
        a_p[:m] = a
        b_p = np.zeros((k, np_), dtype=np.uint64)
        b_p[:, :n] = b
        mt_run, nt_run, kc = plan_gemm(m, n, k, info)
        out = np.zeros((mp, np_), dtype=np.uint64)
        stats = GemmStats()
        mt_all, nt_all = mp // R, np_ // C
        for m0 in range(0, mt_all, mt_run):
            mt = min(mt_run, mt_all - m0)
            for n0 in range(0, nt_all, nt_run):
                nt = min(nt_run, nt_all - n0)
                for k0 in range(0, k, kc):
                    kk = min(kc, k - k0)
                    await self.write("a", 0, tile_a(a_p[m0 * R:(m0 + mt) * R, k0:k0 + kk], R))
                    await self.write("b", 0, tile_b(b_p[k0:k0 + kk, n0 * C:(n0 + nt) * C], C))
                    cyc = await self.run(m_tiles=mt, n_tiles=nt, k=kk, accumulate=k0 > 0)
                    stats.runs += 1
                    stats.cycles += cyc
                    stats.run_cycles.append(cyc)
                    if progress:
                        progress(stats)
                words = await self.read("c", 0, mt * nt * R)
                out[m0 * R:(m0 + mt) * R, n0 * C:(n0 + nt) * C] = untile_c(words, mt, nt, R, C)
        return out[:m, :n], stats

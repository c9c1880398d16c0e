"""Golden model of the whole core: same command bytes in, same response bytes and cycles out."""

import numpy as np

from tessera.hdl.ctrl.protocol import ARG_BYTES, Err, FLAG_ACCUMULATE, Op, PE_CODES, VERSION
from tessera.sim.array import array_model
from tessera.sim.layout import pack_words, unpack_words


__all__ = ["GoldenCore", "run_cycles", "GoldenTransport", "CHECK_CYCLES"]

#: Cycles the core spends validating a RUN's arguments (16 shift-add steps and a compare).
CHECK_CYCLES = 17


def run_cycles(*, m_tiles, n_tiles, k, rows, cols, pe_latency):
    """Busy cycles of a RUN (the performance model the RTL must meet exactly).

    Derivation (docs/architecture.md): ``CHECK_CYCLES`` + 1 cycles of argument checks; the
    tiles are issued back to back, each taking ``P = max(k, rows, cols)`` issue slots; after
    the last operand pair is issued it takes 1 (scratchpad read) + ``pe_latency`` + ``cols``
    (systolic skew) + 1 (array output register) + ``rows`` (drain, one row per cycle) + 1
    (output write) cycles until the last result is stored, and busy falls one cycle later.
    """
    period = max(k, rows, cols)
    tiles = m_tiles * n_tiles
    return (CHECK_CYCLES + 1) + (tiles - 1) * period + k + pe_latency + cols + rows + 2


class GoldenCore:
    """Behavioural twin of `tessera.hdl.core.TesseraCore` speaking the byte protocol.

    ``feed(data)`` consumes command bytes and returns the response bytes they produce. RUNs
    complete at once (the model is never busy); their cycle count comes from `run_cycles`.
    """

    def __init__(self, cfg, *, pe_latency):
        self.cfg = cfg
        self.pe_latency = pe_latency
        self.model = array_model(cfg)
        self.lane_bits = (cfg.pe.a_width, cfg.pe.b_width, cfg.pe.acc_width)
        self.lanes = (cfg.rows, cfg.cols, cfg.cols)
        self.depths = (cfg.memory.a_depth, cfg.memory.b_depth, cfg.memory.c_depth)
        self.spads = [np.zeros((d, n), dtype=np.uint64) for d, n in zip(self.depths, self.lanes)]
        self.wb = [(n * b + 7) // 8 for n, b in zip(self.lanes, self.lane_bits)]
        self.cycles = 0
        self.last_error = 0
        self._buf = bytearray()

    def info_bytes(self):
        c = self.cfg
        return bytes([VERSION, c.rows, c.cols, c.pe.a_width, c.pe.b_width, c.pe.acc_width,
                      PE_CODES[c.pe.kind], self.pe_latency]) \
            + b"".join(d.to_bytes(2, "little") for d in self.depths) \
            + bytes([int(c.pe.kind == "int"), 0])

    def _err(self, code):
        if code:
            self.last_error = code
        return bytes([code])

    def feed(self, data):
        """Consume bytes; return every complete response they produce."""
        self._buf += data
        out = bytearray()
        while self._buf:
            op = self._buf[0]
            if op not in ARG_BYTES:
                del self._buf[0]
                out += self._err(Err.OPCODE)
                continue
            n = ARG_BYTES[op]
            if len(self._buf) < 1 + n:
                break
            args = bytes(self._buf[1:1 + n])
            if op == Op.WRITE:
                spad, addr, count = args[0], int.from_bytes(args[1:3], "little"), \
                    int.from_bytes(args[3:5], "little")
                if spad > 2:
                    del self._buf[:1 + n]
                    out += self._err(Err.SPAD)
                    continue
                if count == 0:
                    del self._buf[:1 + n]
                    out += self._err(Err.ARG)
                    continue
                total = 1 + n + count * self.wb[spad]
                if len(self._buf) < total:
                    break
                payload = bytes(self._buf[1 + n:total])
                del self._buf[:total]
                if addr + count > self.depths[spad]:
                    out += self._err(Err.RANGE)
                    continue
                self.spads[spad][addr:addr + count] = unpack_words(
                    payload, self.lanes[spad], self.lane_bits[spad])
                out += self._err(Err.OK)
                continue
            del self._buf[:1 + n]
            if op == Op.INFO:
                out += bytes([Err.OK]) + self.info_bytes()
            elif op == Op.STATUS:
                flags = 2 if self.last_error else 0
                out += bytes([Err.OK, flags, self.last_error]) + self.cycles.to_bytes(4, "little")
                self.last_error = 0
            elif op == Op.READ:
                spad, addr, count = args[0], int.from_bytes(args[1:3], "little"), \
                    int.from_bytes(args[3:5], "little")
                if spad > 2:
                    out += self._err(Err.SPAD)
                elif count == 0:
                    out += self._err(Err.ARG)
                elif addr + count > self.depths[spad]:
                    out += self._err(Err.RANGE)
                else:
                    out += bytes([Err.OK]) + pack_words(self.spads[spad][addr:addr + count],
                                                        self.lane_bits[spad])
            elif op == Op.RUN:
                out += self._err(self._run(args))
        return bytes(out)

    def _run(self, args):
        f = [int.from_bytes(args[i:i + 2], "little") for i in range(0, 12, 2)]
        mt, nt, k, a_base, b_base, c_base = f
        flags = args[12]
        self.cycles = CHECK_CYCLES  # a rejected RUN still spent its check cycles
        accumulate_ok = self.cfg.pe.kind == "int"
        if mt == 0 or nt == 0 or k == 0 or flags & ~FLAG_ACCUMULATE & 0xFF \
                or (flags & FLAG_ACCUMULATE and not accumulate_ok):
            return Err.ARG
        R, C = self.cfg.rows, self.cfg.cols
        if a_base + mt * k > self.depths[0] or b_base + nt * k > self.depths[1] \
                or c_base + mt * nt * R > self.depths[2]:
            return Err.TILE
        A, B, Cm = self.spads
        for mi in range(mt):
            a_words = A[a_base + mi * k:a_base + (mi + 1) * k]
            for ni in range(nt):
                b_words = B[b_base + ni * k:b_base + (ni + 1) * k]
                res = self.model.tile(a_words, b_words)
                base = c_base + (mi * nt + ni) * R
                if flags & FLAG_ACCUMULATE:
                    res = self.model.accumulate(Cm[base:base + R], res)
                Cm[base:base + R] = res
        self.cycles = run_cycles(m_tiles=mt, n_tiles=nt, k=k, rows=R, cols=C,
                                 pe_latency=self.pe_latency)
        return Err.OK


class GoldenTransport:
    """Host-driver transport onto a `GoldenCore` (the same driver code as RTL and board)."""

    def __init__(self, core):
        self.core = core
        self._rx = bytearray()

    async def send(self, data):
        self._rx += self.core.feed(bytes(data))

    async def recv(self, n):
        if len(self._rx) < n:
            raise TimeoutError(f"golden core answered {len(self._rx)} of {n} expected bytes")
        out = bytes(self._rx[:n])
        del self._rx[:n]
        return out

    async def idle(self, cycles):
        return None

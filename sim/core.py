"""Golden model of the whole core: same command bytes in, same response bytes and cycles out.

It knows the protocol and the stores; what a RUN computes and how long it takes is the
engine twin's business (``cfg.engine.twin()``), so a new engine needs no change here.
"""

from tessera.hdl.ctrl.protocol import COMMANDS, COUNTER_NAMES, Err, Op, command
from tessera.sim.layout import bank_views, empty_stores, pack_words, unpack_words


__all__ = ["GoldenCore", "GoldenTransport"]


class GoldenCore:
    """Behavioural twin of `tessera.hdl.core.TesseraCore` speaking the byte protocol.

    ``feed(data)`` consumes command bytes and returns the response bytes they produce. RUNs
    complete at once (the model is never busy, so a RUN is never held and every READ and
    WRITE is allowed that the RTL allows while idle); their cycle count comes from the engine
    twin, and each RUN runs on the banks it names (`bank_views`).

    COUNTERS (on a core with ``core.counters``): the ``check``, ``compute`` and ``other``
    cycles of every RUN, exactly as the RTL counts them (the twin's ``check_cycles``, its
    ``compute_cycles`` of the RUN and the rest of its cycles). The model has no clock between
    commands, so its ``idle`` counter is the sum of what callers tell ``advance(cycles)``
    (0 unless one does; ``data``, the idle cycles spent receiving a WRITE, stays 0): compare
    the RTL's idle and data cycles with a clock of your own.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.geometry = cfg.geometry
        self.engine = cfg.engine.twin()
        self.engine_args = cfg.engine.args()
        self.engine_code = cfg.engine.code
        self.info = cfg.core_info().pack()
        self.stores = empty_stores(self.geometry)
        self.cycles = 0
        self.prev_cycles = 0
        self.last_error = 0
        self._buf = bytearray()
        self._ops = {c.op: c for c in COMMANDS
                     if c.response != "counters" or cfg.core.counters}
        self.counters = dict.fromkeys(COUNTER_NAMES, 0)

    def advance(self, cycles):
        """``cycles`` pass with no RUN executing (counted as ``idle``)."""
        self.counters["idle"] += int(cycles)

    def _err(self, code):
        if code:
            self.last_error = code
        return bytes([code])

    def _nargs(self, c):
        return c.args.nbytes + (self.engine_args.nbytes if c.engine_args else 0)

    def feed(self, data):
        """Consume bytes; return every complete response they produce."""
        self._buf += data
        out = bytearray()
        stores = self.geometry.stores
        while self._buf:
            op = self._buf[0]
            if op not in self._ops:
                del self._buf[0]
                out += self._err(Err.OPCODE)
                continue
            c = self._ops[op]
            n = self._nargs(c)
            if len(self._buf) < 1 + n:
                break
            raw = bytes(self._buf[1:1 + n])
            if c.data == "words":    # WRITE
                a = c.args.unpack(raw)
                if a["spad"] >= len(stores):
                    del self._buf[:1 + n]
                    out += self._err(Err.SPAD)
                    continue
                if a["count"] == 0:
                    del self._buf[:1 + n]
                    out += self._err(Err.ARG)
                    continue
                s = stores[a["spad"]]
                total = 1 + n + a["count"] * s.word_bytes
                if len(self._buf) < total:
                    break
                payload = bytes(self._buf[1 + n:total])
                del self._buf[:total]
                if a["addr"] + a["count"] > s.words:
                    out += self._err(Err.RANGE)
                    continue
                self.stores[s.name][a["addr"]:a["addr"] + a["count"]] = unpack_words(
                    payload, s.lanes, s.lane_bits)
                out += self._err(Err.OK)
                continue
            del self._buf[:1 + n]
            if c.response == "info":
                out += bytes([Err.OK]) + self.info
            elif c.response == "status":
                flags = 2 if self.last_error else 0
                out += bytes([Err.OK, flags, self.last_error]) + self.cycles.to_bytes(4, "little") \
                    + self.prev_cycles.to_bytes(4, "little")
                self.last_error = 0
            elif c.response == "counters":
                out += bytes([Err.OK]) + b"".join(
                    (self.counters[n] % (1 << 32)).to_bytes(4, "little") for n in COUNTER_NAMES)
            elif c.response == "words":    # READ
                a = c.args.unpack(raw)
                if a["spad"] >= len(stores):
                    out += self._err(Err.SPAD)
                elif a["count"] == 0:
                    out += self._err(Err.ARG)
                elif a["addr"] + a["count"] > stores[a["spad"]].words:
                    out += self._err(Err.RANGE)
                else:
                    s = stores[a["spad"]]
                    out += bytes([Err.OK]) + pack_words(
                        self.stores[s.name][a["addr"]:a["addr"] + a["count"]], s.lane_bits)
            elif c.engine_args:            # RUN
                out += self._err(self._run(raw))
        return bytes(out)

    def _run(self, raw):
        head = command(Op.RUN).args
        h = head.unpack(raw[:head.nbytes])
        if h["engine"] != self.engine_code:
            return Err.ENGINE
        banked = sum(1 << s.id for s in self.geometry.stores if s.banks > 1)
        targets = [s.id + 1 for s in self.geometry.chain_targets]
        if h["banks"] & ~banked or (h["chain"] and h["chain"] not in targets):
            return Err.ARG
        args = self.engine_args.unpack(raw[head.nbytes:])
        if getattr(self.engine, "takes_chain", False):
            args["chain"] = h["chain"]            # the twin lays chained outputs out itself
        err = self.engine.check(args)
        check = self.engine.check_cycles
        self.counters["check"] += check
        if any(s.banks > 1 for s in self.geometry.stores):
            self.prev_cycles = self.cycles        # (a core of one bank per store keeps 0)
        if err:
            self.cycles = check                      # a rejected RUN still spent its check
            return err
        views = bank_views(self.geometry, self.stores, h["banks"])
        if h["chain"]:
            # The epilogue's words land in the chain target, in the bank the RUN does not read:
            # as they are, or as the engine's chain writer lays them out (the twin does it).
            t = self.geometry.store(h["chain"] - 1)
            r = self.geometry.result_stores[1]
            bank = (1 - (h["banks"] >> t.id & 1)) if t.banks > 1 else 0
            target = self.stores[t.name][bank * t.depth:(bank + 1) * t.depth]
            if getattr(self.engine, "takes_chain", False):
                views["chain"] = target
            else:
                views[r.name] = target[:r.depth]
        self.cycles = self.engine.run(views, args)
        compute = self.engine.compute_cycles
        self.counters["compute"] += compute
        self.counters["other"] += self.cycles - check - compute
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

"""Golden twins and host mappers of the ternary reduce-and-scale engines (``array.kind = "tree"``).

`DenseTwin` mirrors `tessera.hdl.engine.tree_dense.TreeDenseEngine`, `RleTwin`
`tessera.hdl.engine.tree_rle.TreeRleEngine`: what a RUN does to the stores and its exact cycle
count. `DenseMapper` and `RleMapper` block a ternary layer ``A @ W`` (activations M x K,
`TernaryB` weights K x N with per-channel scales) into RUNs. On a core with an epilogue
(``memory.p_depth`` > 0) the twins apply it (`Epilogue.apply_codes`) to the words of a RUN with
``FLAG_EPILOGUE`` and write store R instead of C, and the mappers take ``epilogue=``. On a
core whose stores have two banks the mappers run ping-pong (`DenseMapper.overlaps`,
`tessera.sim.pingpong.PingPong`): the same writes, RUNs and reads, each RUN sent while the
one before executes.
"""

from dataclasses import dataclass

import numpy as np

from tessera.hdl.engine.params import accumulate_latency
from tessera.hdl.ctrl.protocol import Err
from tessera.hdl.engine.params import FLAG_ACCUMULATE, FLAG_EPILOGUE, PRODUCT_STEPS, \
    tree_latency
from tessera.sim.engines.model import evaluate
from tessera.sim.pingpong import counter, executor


__all__ = ["TernaryB", "DenseTwin", "RleTwin", "DenseMapper", "RleMapper", "dense_cycle_model",
           "CHECK_CYCLES", "START_CYCLES", "SCALER_EXTRA", "CODE_POS", "CODE_NEG", "CODE_PAD"]

#: Busy cycles of a RUN the argument check rejects.
CHECK_CYCLES = PRODUCT_STEPS + 1
#: Cycles from the start of a RUN to its first operand read.
START_CYCLES = PRODUCT_STEPS + 2
#: Cycles from a scaler load to its result word, beyond one per lane.
SCALER_EXTRA = 3

CODE_POS, CODE_NEG, CODE_PAD = 0b01, 0b11, 0b10


@dataclass(frozen=True)
class TernaryB:
    """Ternary weights of one layer: ``codes`` (K x N: 0b00 0, 0b01 +Wp, 0b11 -Wn) and the
    scale codes ``wp``, ``wn`` (N unsigned fixed-point codes each, one pair per output
    channel; a per-layer pair is the same pair N times)."""
    codes: np.ndarray
    wp: np.ndarray
    wn: np.ndarray

    def __post_init__(self):
        codes = np.asarray(self.codes, dtype=np.uint8)
        if codes.ndim != 2:
            raise ValueError(f"ternary weights: codes must be K x N, not shape {codes.shape}")
        bad = np.flatnonzero(~np.isin(codes, (0, CODE_POS, CODE_NEG)))
        if bad.size:
            raise ValueError(f"ternary weights: code {int(codes.flat[bad[0]]):#04b} at flat index "
                             f"{int(bad[0])}; allowed: 0b00, 0b01, 0b11")
        n = codes.shape[1]
        wp = np.asarray(self.wp, dtype=np.int64).reshape(-1)
        wn = np.asarray(self.wn, dtype=np.int64).reshape(-1)
        if wp.shape != (n,) or wn.shape != (n,):
            raise ValueError(f"ternary weights: wp and wn need one code per output channel "
                             f"({n}), not {wp.shape} and {wn.shape}")
        object.__setattr__(self, "codes", codes)
        object.__setattr__(self, "wp", wp)
        object.__setattr__(self, "wn", wn)

    @property
    def shape(self):
        return self.codes.shape

    @property
    def nonzeros(self):
        return int(np.count_nonzero(self.codes))


def _scale_words(s_store, addr):
    return int(s_store[addr, 0]), int(s_store[addr, 1])


# -- dense ---------------------------------------------------------------------------------------
def dense_cycle_model(*, outputs, tree_latency, combiner_latency, epilogue_latency=None):
    """Busy cycles of a dense RUN as an expression tree in ``m``, ``n_tiles``, ``k``,
    ``accumulate`` and (cores with an epilogue) ``epilogue`` (`tessera.sim.engines.model`);
    the RTL meets it exactly.

    `START_CYCLES` of argument checks; then ``m * n_tiles`` rows issued back to back, each
    taking ``P = max(k, outputs)`` cycles (k words, and the scaler's ``outputs`` lanes); after
    the last row's last word: 2 (store read, operand register) + ``tree_latency`` (the accumulator adds in the
    tree's last cycle) + ``outputs`` + `SCALER_EXTRA` (scaler) + 2 (output write, completion)
    cycles, plus the combiner latency when accumulating, plus ``epilogue_latency`` with the
    epilogue flag (a term present only for cores with an epilogue).
    """
    period = ["max", "k", outputs]
    rows = ["*", "m", "n_tiles"]
    model = ["+", START_CYCLES, ["*", ["-", rows, 1], period], ["-", "k", 1],
             2 + tree_latency + outputs + SCALER_EXTRA + 2,
             ["if", "accumulate", combiner_latency, 0]]
    if epilogue_latency is not None:
        model.append(["if", "epilogue", epilogue_latency, 0])
    return model


class _TwinBase:
    check_cycles = CHECK_CYCLES

    def __init__(self, *, cfg):
        self.cfg = cfg
        self.pe = cfg.pe
        self.combiner = cfg.pe.combiner()
        self.depths = {st.name: st.depth for st in cfg.geometry.stores}
        self.acc_bits = cfg.pe.result_bits
        self.epilogue = cfg.engine.epilogue()

    @property
    def combiner_latency(self):
        return accumulate_latency(self.combiner)

    @property
    def epilogue_latency(self):
        return self.epilogue.latency if self.epilogue is not None else 0

    def _bad_flags(self, flags):
        allowed = FLAG_ACCUMULATE | ((FLAG_EPILOGUE | self.epilogue.flag_mask())
                                     if self.epilogue is not None else 0)
        return bool(flags & ~allowed & 0xFF) or \
            bool(flags & FLAG_ACCUMULATE and self.combiner is None)

    def _bad_p(self, args, count):
        """A RUN with the epilogue flag whose parameter words pass the parameter store."""
        return bool(self.epilogue is not None and args["flags"] & FLAG_EPILOGUE
                    and args["p_base"] + count > self.depths["p"])

    def _write(self, stores, addr, vals, args, tile):
        """Store result words (lanes of signed ints, wrapped) at ``addr`` (an int or an array
        of addresses), combining with the stored words of C if accumulating; with the
        epilogue flag, the epilogue of parameter word ``p_base + tile`` turns them into
        store R's words instead."""
        C = stores["c"]
        new = np.array(np.asarray(vals, dtype=object) % (1 << self.acc_bits), dtype=np.uint64)
        if args["flags"] & FLAG_ACCUMULATE:
            new = self.combiner.twin(C[addr], new)
        if self.epilogue is None or not args["flags"] & FLAG_EPILOGUE:
            C[addr] = new
            return
        e = self.epilogue
        chan = dict(zip((f.name for f in e.channel_fields),
                        e.unpack_params(stores["p"][args["p_base"] + tile])))
        stores["r"][addr] = e.apply_codes(new, chan, e.run_values(args))


class DenseTwin(_TwinBase):
    """What a dense RUN does and how many cycles it takes (`TreeDenseEngine`)."""

    def __init__(self, *, cfg):
        super().__init__(cfg=cfg)
        a = cfg.array
        self.inputs, self.outputs = a.inputs, a.outputs
        self.tree_latency = tree_latency(a.inputs)
        self.model = dense_cycle_model(
            outputs=a.outputs, tree_latency=self.tree_latency,
            combiner_latency=self.combiner_latency,
            epilogue_latency=self.epilogue.latency if self.epilogue is not None else None)

    def check(self, args):
        m, nt, k = args["m"], args["n_tiles"], args["k"]
        if m == 0 or nt == 0 or k == 0 or self._bad_flags(args["flags"]):
            return Err.ARG
        d = self.depths
        if args["a_base"] + m * k > d["a"] or args["w_base"] + nt * k > d["w"] \
                or args["s_base"] + nt * self.outputs > d["s"] \
                or args["c_base"] + m * nt > d["c"] or self._bad_p(args, nt):
            return Err.TILE
        return Err.OK

    def env(self, args):
        env = {"m": args["m"], "n_tiles": args["n_tiles"], "k": args["k"],
               "accumulate": args["flags"] & FLAG_ACCUMULATE}
        if self.epilogue is not None:
            env["epilogue"] = args["flags"] & FLAG_EPILOGUE
        return env

    def run(self, stores, args):
        """Execute a checked RUN on ``stores`` ({name: depth x lanes codes}); returns cycles."""
        I, O = self.inputs, self.outputs
        m, nt, k = args["m"], args["n_tiles"], args["k"]
        A, W, S = stores["a"], stores["w"], stores["s"]
        a = A[args["a_base"]:args["a_base"] + m * k].astype(np.int64).reshape(m, k, I)
        for ni in range(nt):
            w = W[args["w_base"] + ni * k:args["w_base"] + (ni + 1) * k].astype(np.int64)
            # lane i, bits 2o+1:2o -> code[kk, i, o]
            codes = (w[:, :, None] >> (2 * np.arange(O))) & 3
            sp = np.einsum("rki,kio->ro", a, (codes == CODE_POS).astype(np.int64))
            sn = np.einsum("rki,kio->ro", a, (codes == CODE_NEG).astype(np.int64))
            s = S[args["s_base"] + ni * O:args["s_base"] + (ni + 1) * O].astype(object)
            vals = s[None, :, 0] * sp.astype(object) - s[None, :, 1] * sn.astype(object)
            addrs = args["c_base"] + np.arange(m) * nt + ni
            self._write(stores, addrs, vals, args, ni)
        self.compute_cycles = m * nt * k           # COUNTERS compute: k words per row
        return evaluate(self.model, self.env(args))

    def perf(self, args):
        return {"predict": evaluate(self.model, self.env(args)),
                "ideal": args["m"] * args["n_tiles"] * args["k"]}

    def bad_runs(self):
        """RUNs the argument check must refuse, with their error codes."""
        d = self.depths
        return [({"m": 1, "n_tiles": 1, "k": d["a"] + 1}, Err.TILE),
                ({"m": d["c"] + 1, "n_tiles": 1, "k": 1}, Err.TILE),
                ({"m": 1, "n_tiles": d["s"] // self.outputs + 1, "k": 1}, Err.TILE),
                ({"m": 0, "n_tiles": 1, "k": 1}, Err.ARG),
                ({"m": 1, "n_tiles": 1, "k": 1, "flags": 0x80}, Err.ARG)]

    def busy_run(self, need):
        """The shortest RUN (with the store contents it needs) that stays busy for ``need``
        cycles: (fields, cycles, preload) or None."""
        d = self.depths
        best = None
        for k in sorted({1, 2, 4, 8, 16, 32, 64, min(d["a"], d["w"])}):
            if k > min(d["a"], d["w"]):
                continue
            for m in range(1, min(d["a"] // k, d["c"]) + 1):
                fields = {"m": m, "n_tiles": 1, "k": k}
                cycles = evaluate(self.model, {**fields, "accumulate": 0, "epilogue": 0})
                if cycles >= need and (best is None or cycles < best[1]):
                    best = (fields, cycles, {})
                    break
        return best


# -- run-length ----------------------------------------------------------------------------------
class RleTwin(_TwinBase):
    """What a run-length RUN does and how many cycles it takes (`TreeRleEngine`).

    Decoding mirrors the RTL's integer semantics exactly, for any stream (also one the host
    encoder would never write): a position advances by ``z + 1`` per non-PAD entry, the column
    wraps at most once per entry (into the next row), an activation is used only if its
    column is inside the row, rows at or past ``n`` are dropped.
    """

    def __init__(self, *, cfg):
        super().__init__(cfg=cfg)
        a = cfg.array
        self.lanes = a.inputs
        self.z_bits = a.z_bits
        self.model = None

    def check(self, args):
        mt, k, n, e = args["m_tiles"], args["k"], args["n"], args["entries"]
        if mt == 0 or k == 0 or n == 0 or e == 0 or self._bad_flags(args["flags"]):
            return Err.ARG
        d = self.depths
        if args["a_base"] + mt * k > d["a"] or args["w_base"] + e > d["w"] \
                or args["s_base"] + n > d["s"] or args["c_base"] + mt * n > d["c"] \
                or self._bad_p(args, n):
            return Err.TILE
        return Err.OK

    def decode(self, entries, k):
        """Steps of one pass: a list of (col or None, code, leaves_row, row) per entry and the
        final END step, in the RTL's arithmetic."""
        steps = []
        row, cnext = 0, 0
        zmask = (1 << self.z_bits) - 1
        for e in entries:
            e = int(e)
            w2, z = e & 3, (e >> 2) & zmask
            if w2 == CODE_PAD:
                steps.append((None, w2, False, row))
                continue
            col_a = cnext + z
            wrap = col_a >= k
            col = col_a - k if wrap else col_a
            steps.append((col, w2, wrap, row))
            if wrap:
                row = (row + 1) & 0xFFFF
            cnext = (col + 1) & 0x1FFFF
        steps.append((None, 0, True, row))      # END: leave the last row
        return steps

    def run(self, stores, args):
        mt, k, n, E = args["m_tiles"], args["k"], args["n"], args["entries"]
        A, W, S = stores["a"], stores["w"], stores["s"]
        P = self.lanes
        steps = self.decode(W[args["w_base"]:args["w_base"] + E, 0], k)
        # Every m-tile replays the same steps: decode once, apply to all tiles at once.
        a = A[args["a_base"]:args["a_base"] + mt * k].astype(object).reshape(mt, k, P)
        sp = np.zeros((mt, P), dtype=object)
        sn = np.zeros((mt, P), dtype=object)
        tiles = np.arange(mt)
        for col, w2, leaves, row in steps:
            if leaves:
                if row < n:
                    wp, wn = _scale_words(S, args["s_base"] + row)
                    self._write(stores, args["c_base"] + tiles * n + row, wp * sp - wn * sn,
                                args, row)
                sp[:] = 0
                sn[:] = 0
            if col is not None and col < k and w2 in (CODE_POS, CODE_NEG):
                if w2 == CODE_POS:
                    sp += a[:, col]
                else:
                    sn += a[:, col]
        self.compute_cycles = mt * E               # COUNTERS compute: one entry per cycle
        return self.cycles_of(W[args["w_base"]:args["w_base"] + E, 0], args, steps=steps)

    def cycles_of(self, entries, args, *, steps=None):
        """Cycles of a RUN over ``entries`` without touching any store."""
        steps = self.decode(entries, args["k"]) if steps is None else steps
        t = _RleTiming(self.lanes)
        for _ in range(args["m_tiles"]):
            for _, _, leaves, row in steps:
                t.step(leaves and row < args["n"])
        return t.total((self.combiner_latency if args["flags"] & FLAG_ACCUMULATE else 0)
                       + (self.epilogue_latency if args["flags"] & FLAG_EPILOGUE else 0))

    def perf(self, args, *, entries):
        """``predict`` (this RUN's cycles over the stream ``entries``) and ``ideal`` (one cycle
        per non-zero weight entry and m-tile)."""
        e = np.asarray(entries, dtype=np.uint64).reshape(-1)
        nonzero = int(np.count_nonzero(np.isin(e & np.uint64(3), (CODE_POS, CODE_NEG))))
        return {"predict": self.cycles_of(e, args), "ideal": args["m_tiles"] * nonzero}

    def bad_runs(self):
        d = self.depths
        one = {"m_tiles": 1, "k": 1, "n": 1, "entries": 1}
        return [({**one, "k": d["a"] + 1}, Err.TILE),
                ({**one, "entries": d["w"] - 0 + 1}, Err.TILE) if d["w"] < 65535 else
                ({**one, "w_base": d["w"]}, Err.TILE),
                ({**one, "n": d["s"] + 1}, Err.TILE),
                ({**one, "m_tiles": d["c"] + 1}, Err.TILE),
                ({**one, "entries": 0}, Err.ARG),
                ({**one, "flags": 0x80}, Err.ARG)]

    def busy_run(self, need):
        """A RUN over a stream of fillers (preloaded into W at 0) that stays busy for ``need``
        cycles: (fields, cycles, preload)."""
        d = self.depths
        e = 1
        while True:
            fields = {"m_tiles": 1, "k": 1, "n": 1, "entries": e}
            stream = np.zeros((e, 1), dtype=np.uint64)      # fillers, z = 0
            cycles = self.cycles_of(stream[:, 0], {**fields, "flags": 0})
            if cycles >= need:
                return fields, cycles, {"w": (0, stream)}
            if e >= d["w"]:
                return None
            e = min(d["w"], 2 * e)


class _RleTiming:
    """The RLE engine's cycle count: one decode step per cycle from `START_CYCLES` + 1, a step
    that hands a row to the scaler waits until the scaler takes a row (every ``lanes``
    cycles); busy ends 2 cycles after the last result word (or after the last step)."""

    def __init__(self, lanes):
        self.P = lanes
        self.t = START_CYCLES          # cycle of the previous step (the first is START + 1)
        self.last_load = None

    def step(self, flush):
        t = self.t + 1
        if flush:
            if self.last_load is not None:
                t = max(t, self.last_load + self.P - 1)
            self.last_load = t + 1
        self.t = t

    def total(self, combiner_latency):
        done = self.t + 1
        if self.last_load is not None:
            done = max(done, self.last_load + self.P + SCALER_EXTRA + 1)
        return done + 1 + combiner_latency


# -- host mappers --------------------------------------------------------------------------------
def _as_weights(b):
    if not isinstance(b, TernaryB):
        raise ValueError(f"a ternary core multiplies by TernaryB weights (codes, wp, wn), not "
                         f"{type(b).__name__}")
    return b


def _check_shapes(a, b):
    a = np.asarray(a, dtype=np.int64)
    if a.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"gemm: shapes {a.shape} and {b.shape} do not chain (M x K, K x N)")
    return a


def _epilogue_setup(cfg, epilogue, n, channels):
    """The mapper's epilogue: (spec, per-channel parameter lane codes for ``channels``
    channels (the first ``n`` from ``epilogue``, the rest 0), RUN fields, flags bits), or
    Nones without one."""
    if epilogue is None:
        return None, None, {}, 0
    epi = cfg.engine.epilogue()
    if epi is None:
        raise ValueError("gemm: epilogue= needs a core with an epilogue (memory.p_depth > 0)")
    params = epi.pack_params(**{f.name: np.broadcast_to(np.asarray(epilogue[f.name]), (n,))
                                for f in epi.channel_fields})
    params = np.concatenate([params, np.zeros((channels - n) * epi.lanes_per_channel,
                                               dtype=np.uint64)])
    fields, flags = epi.run_codes(epilogue)
    return epi, params, fields, FLAG_EPILOGUE | flags


async def _run(drv, stats, progress, **fields):
    """One RUN, counted into ``stats``."""
    counter(stats, progress)(await drv.run(**fields))


def _executor(mapper, drv, epilogue, count):
    """`PingPong` when ``mapper.overlaps(drv, epilogue=...)``, else `Sequential`."""
    return executor(mapper.overlaps(drv, epilogue=epilogue), drv, mapper.cfg.geometry, count)


def _overlaps(cfg, drv, epilogue):
    """Whether a tree mapper's `gemm` runs ping-pong: ``drv.overlap`` and two banks in A, W,
    S (and P with the epilogue), the stores it writes, and in every result store."""
    from tessera.sim.pingpong import PingPong
    return PingPong.possible(drv, cfg.geometry, ["a", "w", "s"] + (["p"] if epilogue else []))


class DenseMapper:
    """Host side of the dense engine: blocks ``A @ W`` into RUNs and moves the words.

    Scratchpad layout per RUN: A words ``r*k + kk`` (row r, inputs kk*I..kk*I+I-1), W words
    ``ni*k + kk``, S words ``ni*O + o`` (the n-group's scales, written once per group), C words
    ``r*n_tiles + ni``. K is split into accumulating RUNs when a row does not fit. With
    ``epilogue=``, P words ``ni`` (the n-group's parameters, ``outputs`` channels each),
    the last K chunk's RUNs set ``FLAG_EPILOGUE`` and the results come from R (same words as
    C).
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.I, self.O = cfg.array.inputs, cfg.array.outputs
        self.d = {s.name: s.depth for s in cfg.geometry.stores}

    def plan(self, m, n, k_words, *, epilogue=False):
        """(rows per RUN, n-tiles per RUN, K words per RUN) for an M x N x K layer (with an
        epilogue, at most one n-tile per parameter word)."""
        d = self.d
        nt_all = -(-n // self.O)
        kc = min(k_words, d["a"], d["w"])
        if kc < k_words and self.cfg.pe.combiner() is None:
            raise ValueError(f"K={k_words} words do not fit the scratchpads and this core cannot "
                             f"accumulate")
        nt = max(1, min(nt_all, d["w"] // kc, d["s"] // self.O, d["c"],
                        d["p"] if epilogue else nt_all))
        mr = max(1, min(m, d["a"] // kc, d["c"] // nt))
        if nt * self.O > d["s"] or mr * nt > d["c"]:
            raise ValueError(f"scratchpads S (depth {d['s']}) and C (depth {d['c']}) cannot hold "
                             f"one tile of {self.O} output channels")
        return mr, nt, kc

    async def gemm(self, drv, a, b, *, progress=None, mode=None, epilogue=None):
        """``a @ b`` on the core; returns (M x N result codes, `GemmStats`). ``epilogue``:
        None (accumulator codes from C) or the epilogue's parameters
        (`Epilogue.user_params`: one array of N per channel field, a value per run or flag
        field); the results are then its output codes from R."""
        from tessera.sim.driver import GemmStats
        b = _as_weights(b)
        a = _check_shapes(a, b)
        I, O = self.I, self.O
        M, K = a.shape
        N = b.shape[1]
        kw = -(-K // I)
        ntl = -(-N // O)
        a_p = np.zeros((M, kw * I), dtype=np.uint64)
        a_p[:, :K] = a
        codes = np.zeros((kw * I, ntl * O), dtype=np.uint64)
        codes[:K, :N] = b.codes
        scales = np.zeros((ntl * O, 2), dtype=np.uint64)
        scales[:N, 0], scales[:N, 1] = b.wp, b.wn
        a_words = a_p.reshape(M, kw, I)
        # W word (tile ni, word kk), lane i: sum_o code[kk*I + i, ni*O + o] << 2o.
        c4 = codes.reshape(kw, I, ntl, O)
        w_words = np.bitwise_or.reduce(c4 << (2 * np.arange(O, dtype=np.uint64)), axis=3)
        w_words = w_words.transpose(2, 0, 1)            # ntl x kw x I
        mr, nt, kc = self.plan(M, N, kw, epilogue=epilogue is not None)
        epi, params, extra, epi_flags = _epilogue_setup(self.cfg, epilogue, N, ntl * O)
        out = np.zeros((M, ntl * O), dtype=np.uint64)
        stats = GemmStats(k_split=kc * I)
        # One RUN after another, or ping-pong on banked stores (`overlaps`): the same writes,
        # RUNs and reads in the same order either way (`PingPong` picks the banks; a store
        # not written keeps its bank, so W and S written once serve many RUNs).
        ex = _executor(self, drv, epi is not None, counter(stats, progress))

        def place(b0, bl, n0, ntr):
            def done(words):                                               # r*ntr + ni
                out[b0:b0 + bl, n0 * O:(n0 + ntr) * O] = words.reshape(bl, ntr * O)
            return done

        for n0 in range(0, ntl, nt):
            ntr = min(nt, ntl - n0)
            await ex.write("s", 0, scales[n0 * O:(n0 + ntr) * O])
            if epi is not None:
                lpw = O * epi.lanes_per_channel
                await ex.write("p", 0, params[n0 * lpw:(n0 + ntr) * lpw].reshape(ntr, lpw))
            # A block of rows whose results C holds at once: each W chunk is written once per
            # block, and the block's RUNs accumulate into their own C regions.
            block = max(mr, (self.d["c"] // ntr) // mr * mr)
            for b0 in range(0, M, block):
                bl = min(block, M - b0)
                for k0 in range(0, kw, kc):
                    kk = min(kc, kw - k0)
                    if b0 == 0 or kc < kw:
                        await ex.write("w", 0, w_words[n0:n0 + ntr, k0:k0 + kk].reshape(-1, I))
                    for m0 in range(b0, b0 + bl, mr):
                        mm = min(mr, b0 + bl - m0)
                        await ex.write("a", 0, a_words[m0:m0 + mm, k0:k0 + kk].reshape(-1, I))
                        flags = FLAG_ACCUMULATE if k0 else 0
                        if k0 + kk >= kw:
                            flags |= epi_flags
                        await ex.run(m=mm, n_tiles=ntr, k=kk, c_base=(m0 - b0) * ntr,
                                     flags=flags, **extra)
                await ex.read("c" if epi is None else "r", 0, bl * ntr, place(b0, bl, n0, ntr))
                ex.end_block()
        await ex.finish()
        return out[:, :N], stats

    def overlaps(self, drv, *, epilogue=False, resident=False):
        """Whether `gemm` runs ping-pong (`tessera.sim.pingpong.PingPong`): the driver allows
        it (``drv.overlap``) and A, W, S (and P with the epilogue), the stores it writes, and
        every result store have two banks. ``resident`` changes nothing here: the tree
        mappers write W through the driver (a resident driver elides what is unchanged)."""
        return _overlaps(self.cfg, drv, epilogue)

    def chains(self):
        """Whether this core can chain dense layers (`chain`): store A is a chain target."""
        g = self.cfg.geometry
        return any(s.name == "a" for s in g.chain_targets)

    async def chain(self, drv, a, layers, *, progress=None):
        """Dense layers back to back on chip: ``a`` (M x K0 activation codes) goes in once,
        each layer's epilogue outputs go straight into store A as the next layer's input (RUN
        ``chain``: the epilogue's words land where the next RUN reads them, R's word being an
        A word when ``inputs == outputs``), and only the last layer's outputs come out.

        ``layers``: ``[(TernaryB weights, epilogue)]``, each layer's K the previous one's N,
        every layer with the epilogue (`Epilogue.user_params`) but the last, which may have
        None (its accumulator codes then come from C). Every layer's W, S and P words
        get their own regions (written through the driver, so a resident driver sends them
        once across images). A of two banks: layer l reads bank l % 2 and its outputs go to
        the other; one bank: two regions of A take turns. One RUN per layer (all M rows,
        every n-tile, the whole K). Returns (M x N_last output codes, `GemmStats`).

        Raises ValueError (naming what does not fit) when the core cannot: ``inputs !=
        outputs``, no epilogue or store A not a chain target, the regions do not fit."""
        from tessera.sim.driver import GemmStats
        g = self.cfg.geometry
        I, O = self.I, self.O
        epi = self.cfg.engine.epilogue()
        if I != O or epi is None or g.store("a") not in g.chain_targets:
            raise ValueError(f"chain: needs array.inputs == array.outputs (not {I} and {O}), "
                             f"an epilogue (memory.p_depth > 0) and store A a chain target")
        a = np.asarray(a, dtype=np.uint64)
        M = a.shape[0]
        prep, K = [], a.shape[1]
        for i, (b, epilogue) in enumerate(layers):
            b = _as_weights(b)
            if b.codes.shape[0] != K:
                raise ValueError(f"chain: layer {i} takes K={b.codes.shape[0]}, the one before "
                                 f"gives {K}")
            N = b.codes.shape[1]
            kw, ntl = -(-K // I), -(-N // O)
            codes = np.zeros((kw * I, ntl * O), dtype=np.uint64)
            codes[:K, :N] = b.codes
            c4 = codes.reshape(kw, I, ntl, O)
            w_words = np.bitwise_or.reduce(c4 << (2 * np.arange(O, dtype=np.uint64)), axis=3)
            scales = np.zeros((ntl * O, 2), dtype=np.uint64)
            scales[:N, 0], scales[:N, 1] = b.wp, b.wn
            if epilogue is None and i < len(layers) - 1:
                raise ValueError(f"chain: layer {i} has no epilogue; only the last may go "
                                 f"without one")
            _, params, extra, flags = _epilogue_setup(self.cfg, epilogue, N, ntl * O)
            lpw = O * epi.lanes_per_channel
            prep.append(dict(kw=kw, ntl=ntl, N=N, w=w_words.transpose(2, 0, 1).reshape(-1, I),
                             s=scales, extra=extra, flags=flags,
                             p=None if params is None else params.reshape(ntl, lpw)))
            K = N
        d = self.d
        # Regions: each layer's W, S and P words after the previous layer's.
        w_base = s_base = p_base = 0
        for L in prep:
            L.update(w_base=w_base, s_base=s_base, p_base=p_base)
            w_base += L["ntl"] * L["kw"]
            s_base += L["ntl"] * O
            p_base += L["ntl"] if L["p"] is not None else 0
        for name, used in (("w", w_base), ("s", s_base), ("p", p_base)):
            if used > d[name]:
                raise ValueError(f"chain: the layers' {name.upper()} words ({used}) do not fit "
                                 f"store {name.upper()} ({d[name]} words)")
        banked = g.store("a").banks == 2
        span = M * max(L["kw"] for L in prep)
        regions = (0, 0) if banked else (0, span)
        need = regions[1] + span
        if need > min(d["a"], d["c"]):
            raise ValueError(f"chain: {M} rows of the layers' activations need {need} words of "
                             f"A and C, the core has {d['a']} and {d['c']}")
        stats = GemmStats(k_split=0)
        for L in prep:
            await drv.write("w", L["w_base"], L["w"])
            await drv.write("s", L["s_base"], L["s"])
            if L["p"] is not None:
                await drv.write("p", L["p_base"], L["p"])
        await drv.write("a", 0, a.reshape(M, prep[0]["kw"], I).reshape(-1, I)
                        if a.shape[1] == prep[0]["kw"] * I else
                        np.pad(a, ((0, 0), (0, prep[0]["kw"] * I - a.shape[1]))).reshape(-1, I))
        a_id = g.store("a").id
        for li, L in enumerate(prep):
            last = li == len(prep) - 1
            cur = li % 2
            fields = dict(m=M, n_tiles=L["ntl"], k=L["kw"], a_base=regions[cur],
                          w_base=L["w_base"], s_base=L["s_base"],
                          c_base=0 if last else regions[1 - cur], p_base=L["p_base"],
                          flags=L["flags"], **L["extra"])
            await _run(drv, stats, progress, banks=(cur << a_id) if banked else 0,
                       chain=0 if last else a_id + 1, **fields)
        L = prep[-1]
        words = await drv.read("r" if L["p"] is not None else "c", 0, M * L["ntl"])
        return words.reshape(M, L["ntl"] * O)[:, :L["N"]], stats


class RleMapper:
    """Host side of the run-length engine: encodes each (n-group, K chunk) of W transposed into
    the entry stream (`tessera.sim.ternary.hw_encode`, every row given at least ``lanes``
    entries so the scaler never waits), then runs m-tiles of ``lanes`` activation rows.

    Scratchpad layout per RUN: A words ``mi*k + col`` (lane j: row mi*lanes + j), W entries
    from 0, S words = the n-group's channels, C words ``mi*n + row``. With ``epilogue=``, P
    words = the n-group's channels (one channel per word), the last K chunk's RUNs set
    ``FLAG_EPILOGUE`` and the results come from R (same words as C).
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.P = cfg.array.inputs
        self.z_bits = cfg.array.z_bits
        self.d = {s.name: s.depth for s in cfg.geometry.stores}

    def plan(self, m, n, k):
        """(m-tiles per RUN, K per RUN) before the weights are known (the n-groups depend on
        the entry streams, `groups`)."""
        d = self.d
        mt_all = -(-m // self.P)
        kc = min(k, d["a"])
        if kc < k and self.cfg.pe.combiner() is None:
            raise ValueError(f"K={k} does not fit scratchpad A (depth {d['a']}) and this core "
                             f"cannot accumulate")
        mt = max(1, min(mt_all, d["a"] // kc, d["c"]))
        return mt, kc

    def encode(self, wt):
        from tessera.sim.ternary import hw_encode
        return np.asarray(hw_encode(wt, self.z_bits, min_row_entries=self.P), dtype=np.uint64)

    def groups(self, codes_t, kc, mt, *, epilogue=False):
        """Split the N output rows into groups whose entry streams fit W for every K chunk
        (and whose rows fit S, C and, with an epilogue, P). Returns a list of (n0, n,
        [stream per K chunk])."""
        d = self.d
        N, K = codes_t.shape
        limit_n = min(d["s"], d["c"] // mt, 0xFFFF, d["p"] if epilogue else 0xFFFF)
        out, n0 = [], 0
        while n0 < N:
            best = None
            n = 1
            while n0 + n <= N and n <= limit_n:
                streams = [self.encode(codes_t[n0:n0 + n, k0:k0 + kc]) for k0 in range(0, K, kc)]
                if max(len(s) for s in streams) > d["w"]:
                    break
                best = (n0, n, streams)
                n += 1
            if best is None:
                raise ValueError(f"the weights of one output channel over {kc} inputs need more "
                                 f"entries than scratchpad W holds ({d['w']})")
            out.append(best)
            n0 += best[1]
        return out

    async def gemm(self, drv, a, b, *, progress=None, mode=None, epilogue=None):
        """``a @ b`` on the core; returns (M x N result codes, `GemmStats`); ``epilogue`` as
        in `DenseMapper.gemm`."""
        from tessera.sim.driver import GemmStats
        b = _as_weights(b)
        a = _check_shapes(a, b)
        P = self.P
        M, K = a.shape
        mt_all = -(-M // P)
        a_p = np.zeros((mt_all * P, K), dtype=np.uint64)
        a_p[:M] = a
        # A word (tile mi, col) lane j = a[mi*P + j, col]
        a_words = a_p.reshape(mt_all, P, K).transpose(0, 2, 1)      # mt x K x P
        mt, kc = self.plan(M, b.shape[1], K)
        codes_t = b.codes.T
        out = np.zeros((mt_all * P, b.shape[1]), dtype=np.uint64)
        stats = GemmStats(k_split=kc)
        N = b.shape[1]
        epi, params, extra, epi_flags = _epilogue_setup(self.cfg, epilogue, N, N)
        # One RUN after another, or ping-pong on banked stores (as in `DenseMapper.gemm`).
        ex = _executor(self, drv, epi is not None, counter(stats, progress))

        def place(b0, bl, n0, n):
            def done(words):                                               # mi*n + row
                blk = words.reshape(bl, n, P).transpose(0, 2, 1).reshape(bl * P, n)
                out[b0 * P:(b0 + bl) * P, n0:n0 + n] = blk
            return done

        for n0, n, streams in self.groups(codes_t, kc, mt, epilogue=epi is not None):
            await ex.write("s", 0, np.stack([b.wp[n0:n0 + n], b.wn[n0:n0 + n]], axis=1))
            if epi is not None:
                lpc = epi.lanes_per_channel
                await ex.write("p", 0, params[n0 * lpc:(n0 + n) * lpc].reshape(n, lpc))
            # m-tiles whose results C holds at once: each stream is written once per block.
            block = max(mt, (self.d["c"] // n) // mt * mt)
            for b0 in range(0, mt_all, block):
                bl = min(block, mt_all - b0)
                for ci, k0 in enumerate(range(0, K, kc)):
                    kk = min(kc, K - k0)
                    if len(streams) > 1 or b0 == 0:
                        await ex.write("w", 0, streams[ci].reshape(-1, 1))
                    for m0 in range(b0, b0 + bl, mt):
                        mm = min(mt, b0 + bl - m0)
                        await ex.write("a", 0, a_words[m0:m0 + mm, k0:k0 + kk].reshape(-1, P))
                        flags = FLAG_ACCUMULATE if k0 else 0
                        if k0 + kk >= K:
                            flags |= epi_flags
                        await ex.run(m_tiles=mm, k=kk, n=n, entries=len(streams[ci]),
                                     c_base=(m0 - b0) * n, flags=flags, **extra)
                await ex.read("c" if epi is None else "r", 0, bl * n, place(b0, bl, n0, n))
                ex.end_block()
        await ex.finish()
        return out[:M], stats

    def overlaps(self, drv, *, epilogue=False, resident=False):
        """Whether `gemm` runs ping-pong: as `DenseMapper.overlaps` (A, W, S, P with the
        epilogue, and every result store with two banks; ``drv.overlap``)."""
        return _overlaps(self.cfg, drv, epilogue)

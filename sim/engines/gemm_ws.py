"""Golden twin of `tessera.hdl.engine.gemm_ws.GemmWSEngine` (results, check, exact cycles)
and its host-side mapper."""

import numpy as np

from tessera.hdl.ctrl.protocol import Err
from tessera.hdl.engine.params import (CHECK_CYCLES, FLAG_ACCUMULATE, FLAG_EPILOGUE,
                                       accumulate_latency, ws_periods)
from tessera.sim.engines.gemm_host import epilogue_setup, gemm_operands_checked
from tessera.sim.engines.model import evaluate
from tessera.sim.pingpong import PingPong, counter, executor


__all__ = ["GemmWSTwin", "GemmWSMapper", "cycle_model", "run_cycles", "plan_ws", "balanced",
           "k_chunks", "n_blocks", "ws_a_words", "ws_b_words", "ws_c_matrix"]


def cycle_model(*, rows, cols, extra, acc_latency, epilogue_latency=None, ii=1):
    """Busy cycles of a weight-stationary RUN as an expression tree in ``m``, ``n_tiles``,
    ``k_tiles``, ``accumulate`` and (cores with an epilogue) ``epilogue``; the RTL meets it
    exactly.

    The schedule: `CHECK_CYCLES` + 1 cycles of argument checks; ``rows`` cycles reading the
    first weight tile; ``n_tiles * k_tiles`` passes of ``P`` cycles (`ws_periods`), the last
    one of each n-tile but the last taking ``P_gap`` when a replacing pass follows combining
    ones (``k_tiles`` > 1 without ``accumulate``); the last pass's ``m`` vectors, one every
    ``ii`` cycles (``ii``: an int, or one per run-time mode, then the tree reads ``mode``);
    then 2
    (store read, operand register) + the array's ``rows + cols + extra + 1`` (``extra``: the
    parts' ``front`` + ``finish_latency``) + 1 (the output
    stage's write) + 1 cycles, plus the output stage's combining latency when the last pass
    combines (``k_tiles`` > 1 or ``accumulate``) and the epilogue's with the epilogue flag.
    """
    AL = acc_latency
    if isinstance(ii, int):
        step = ii
    else:                     # one II per run-time mode (a plain number when they agree)
        step = ii[0]
        for code in range(1, len(ii)):
            if ii[code] != ii[0]:
                step = ["if", ["==", "mode", code], ii[code], step]
    m_ii = "m" if step == 1 else ["*", "m", step]
    period = ["max", m_ii, rows, 2 + AL]
    period_gap = ["max", ["+", m_ii, AL], rows, 2 + AL]
    single = ["==", "k_tiles", 1]
    gaps = ["if", "accumulate", 0, ["if", single, 0, ["-", "n_tiles", 1]]]
    model = ["+", CHECK_CYCLES + 1 + rows,
             ["*", ["-", ["*", "n_tiles", "k_tiles"], 1], period],
             ["*", gaps, ["-", period_gap, period]],
             ["-", "m", 1] if step == 1 else ["*", ["-", "m", 1], step],
             2 + rows + cols + extra + 1 + 2,
             ["if", "accumulate", AL, ["if", single, 0, AL]]]
    if epilogue_latency is not None:
        model.append(["if", "epilogue", epilogue_latency, 0])
    return model


def ws_a_words(a_lanes, rows):
    """A lanes (M x K lane codes, K a multiple of ``rows``) -> WS A words: word ``kt*M + mm``
    holds ``a_lanes[mm, kt*rows + r]`` in lane r."""
    m, k = a_lanes.shape
    return a_lanes.reshape(m, k // rows, rows).transpose(1, 0, 2).reshape(k // rows * m, rows)


def ws_b_words(b_lanes, cols):
    """B lanes (K x N, N a multiple of ``cols``) -> B words: word ``ni*K + k`` holds
    ``b_lanes[k, ni*cols + c]`` in lane c (the output-stationary engine's layout)."""
    from tessera.sim.layout import tile_b
    return tile_b(b_lanes, cols)


def ws_c_matrix(words, m, n_tiles, cols):
    """C words of a RUN (word ``ni*m + mm``) -> the m x (n_tiles*cols) result matrix."""
    w = np.asarray(words).reshape(n_tiles, m, cols)
    return w.transpose(1, 0, 2).reshape(m, n_tiles * cols)


class GemmWSTwin:
    """What a weight-stationary GEMM RUN does to the stores and how many cycles it takes.

    Parameters
    ----------
    rows, cols : int
    pe : PEKind
        The PE kind config (its twin computes a pass as an output-stationary tile of ``m``
        rows over K = ``rows`` lane pairs; its combiner accumulates in the result store).
    geometry : Geometry
    epilogue : Epilogue or None
    front, finish : int
        Pipeline registers of the kind's product function and of its finish below the
        columns (`tessera.hdl.array.parts`).
    """

    check_cycles = CHECK_CYCLES
    takes_chain = False
    chain = False

    def __init__(self, *, rows, cols, pe, geometry, front, finish=0, epilogue=None):
        self.rows, self.cols = rows, cols
        self.pe = pe
        self.tile_model = pe.twin()
        self.combiner = pe.combiner()
        self.depths = {s.name: s.depth for s in geometry.stores}
        self.epilogue = epilogue
        self.front, self.finish = front, finish
        self.extra = front + finish
        self.iis = tuple(pe.ii(md) for md in pe.modes) if pe.modes else (pe.ii(),)
        self.model = cycle_model(rows=rows, cols=cols, extra=self.extra,
                                 ii=self.iis if pe.modes else self.iis[0],
                                 acc_latency=self.combiner_latency,
                                 epilogue_latency=epilogue.latency if epilogue else None)

    @property
    def combiner_latency(self):
        return accumulate_latency(self.combiner)

    def check(self, args):
        """The error code the argument check gives (0: the RUN proceeds)."""
        m, nt, kt, flags = args["m"], args["n_tiles"], args["k_tiles"], args["flags"]
        allowed = (FLAG_ACCUMULATE if self.combiner is not None else 0) | (
            (FLAG_EPILOGUE | self.epilogue.flag_mask()) if self.epilogue else 0)
        if m == 0 or nt == 0 or kt == 0 or flags & ~allowed & 0xFF \
                or (self.combiner is None and kt > 1):
            return Err.ARG
        if "mode" in args and args["mode"] >= max(1, len(self.pe.modes)):
            return Err.ARG
        if args["a_base"] + kt * m > self.depths["a"] \
                or args["b_base"] + nt * kt * self.rows > self.depths["b"] \
                or args["c_base"] + nt * m > self.depths["c"] \
                or (flags & FLAG_EPILOGUE and args["p_base"] + nt > self.depths["p"]):
            return Err.TILE
        return Err.OK

    def env(self, args):
        env = {"m": args["m"], "n_tiles": args["n_tiles"], "k_tiles": args["k_tiles"],
               "accumulate": args["flags"] & FLAG_ACCUMULATE}
        if self.epilogue:
            env["epilogue"] = args["flags"] & FLAG_EPILOGUE
        if self.pe.modes:
            env["mode"] = args.get("mode", 0)
        return env

    def ii(self, args):
        """Cycles between vectors in the RUN's mode."""
        return self.iis[args.get("mode", 0) if self.pe.modes else 0]

    def run(self, stores, args):
        """Execute a checked RUN on ``stores`` ({name: depth x lanes codes}); returns cycles.
        Pass by pass, as the hardware does: the first K tile's words replace (or combine
        with, under ``FLAG_ACCUMULATE``) the stored ones, every later one combines, the last
        one goes through the epilogue into store R when the flag asks."""
        M, nt, kt_n = args["m"], args["n_tiles"], args["k_tiles"]
        acc = bool(args["flags"] & FLAG_ACCUMULATE)
        epi = bool(args["flags"] & FLAG_EPILOGUE)
        mode = self.pe.modes[args["mode"]] if "mode" in args and self.pe.modes else None
        A, B, Cm = stores["a"], stores["b"], stores["c"]
        R = self.rows
        for ni in range(nt):
            base = args["c_base"] + ni * M
            for kt in range(kt_n):
                a_words = np.asarray(A[args["a_base"] + kt * M:args["a_base"] + (kt + 1) * M])
                b0 = args["b_base"] + (ni * kt_n + kt) * R
                b_words = B[b0:b0 + R]
                # Pass: out[mm, c] = sum_r a_words[mm][r] (x) b_words[r][c], the kind's
                # tile with the M vectors as its rows and the R lanes as its K.
                res = self.tile_model.tile(a_words.T, b_words, mode=mode)
                if acc or kt > 0:
                    res = self.combiner.twin(Cm[base:base + M], res)
                if epi and kt == kt_n - 1:
                    stores["r"][base:base + M] = self._epilogue(stores, args, ni, res)
                else:
                    Cm[base:base + M] = res
        self.compute_cycles = nt * kt_n * M * self.ii(args)   # COUNTERS compute: m x ii
        return evaluate(self.model, self.env(args))

    def _epilogue(self, stores, args, ni, res):
        e = self.epilogue
        chan = dict(zip((f.name for f in e.channel_fields),
                        e.unpack_params(stores["p"][args["p_base"] + ni])))
        return e.apply_codes(res, chan, e.run_values(args))

    def perf(self, args, *, macs=None):
        """``predict`` (cycles of this RUN) and ``ideal`` (its lane-pair products over the
        PEs, or ``macs`` over the PEs)."""
        mode = self.pe.modes[args["mode"]] if "mode" in args and self.pe.modes else None
        per_pair = self.pe.layout(mode).k_per_word
        pairs = args["m"] * args["n_tiles"] * self.cols * args["k_tiles"] * self.rows
        work = pairs * per_pair if macs is None else macs
        return {"predict": evaluate(self.model, self.env(args)),
                "ideal": work / (self.rows * self.cols * per_pair / self.ii(args))}

    def reads(self, args):
        """Scratchpad words a checked RUN reads, per store: A one word per vector of every
        pass, B ``rows`` words per pass (its weight tile), C one per combining result word
        (every pass after the first K tile, and the first under ``FLAG_ACCUMULATE``: the
        result store is the accumulator), P one per epilogue word."""
        m, nt, kt = args["m"], args["n_tiles"], args["k_tiles"]
        acc = 1 if args["flags"] & FLAG_ACCUMULATE else 0
        return {"a": nt * kt * m, "b": nt * kt * self.rows, "c": nt * m * (kt - 1 + acc),
                "p": nt * m if args["flags"] & FLAG_EPILOGUE else 0}

    def bad_runs(self):
        """RUNs the argument check must refuse, with their error codes."""
        da, db, dc = self.depths["a"], self.depths["b"], self.depths["c"]
        return [({"m": da + 1, "n_tiles": 1, "k_tiles": 1}, Err.TILE),
                ({"m": 1, "n_tiles": db // self.rows + 1, "k_tiles": 1}, Err.TILE),
                ({"m": dc + 1, "n_tiles": 1, "k_tiles": 1}, Err.TILE),
                ({"m": 0, "n_tiles": 1, "k_tiles": 1}, Err.ARG),
                ({"m": 1, "n_tiles": 1, "k_tiles": 1, "flags": 0x80}, Err.ARG)]

    def busy_run(self, need):
        """The shortest RUN that fits the scratchpads and, by the cycle model, stays busy for
        ``need`` cycles: (fields, cycles, preload), or None."""
        da, db, dc = self.depths["a"], self.depths["b"], self.depths["c"]
        best = None
        for kt in (1, 2, 4):
            for m in sorted({1, 2, 4, 8, 16, 32, 64, 128, min(da, dc)}):
                if kt * m > da or m > dc:
                    continue
                nt = min(db // (kt * self.rows), dc // m, 64)
                if nt < 1:
                    continue
                env = {"m": m, "n_tiles": nt, "k_tiles": kt, "accumulate": 0}
                if self.epilogue:
                    env["epilogue"] = 0
                if self.pe.modes:
                    env["mode"] = 0
                cycles = evaluate(self.model, env)
                if cycles >= need and (best is None or cycles < best[1]):
                    best = ({"m": m, "n_tiles": nt, "k_tiles": kt}, cycles, {})
        return best


def run_cycles(m, n_tiles, k_tiles, accumulate, epilogue, *, rows, cols, extra, acc_latency,
               epilogue_latency=0, ii=1):
    """`cycle_model` in closed form (Python ints; the mapper's planner and the performance
    model use it, `tests/test_ws_engine.py` checks it against the tree and the RTL)."""
    p, pg = ws_periods(m, rows, acc_latency, ii)
    gaps = (n_tiles - 1) if k_tiles > 1 and not accumulate else 0
    return (CHECK_CYCLES + 1 + rows + (n_tiles * k_tiles - 1) * p + gaps * (pg - p)
            + (m - 1) * ii
            + 2 + rows + cols + extra + 1 + 2
            + (acc_latency if accumulate or k_tiles > 1 else 0)
            + (epilogue_latency if epilogue else 0))


def balanced(total, parts):
    """``total`` cut into ``parts`` pieces differing by at most one: ``[(size, count)]``,
    larger pieces first (at most two entries)."""
    q, r = divmod(total, parts)
    return [(s, c) for s, c in ((q + 1, r), (q, parts - r)) if c and s]


def k_chunks(total, size, epilogue):
    """K chunks of an output block: ``[(k tiles, accumulate, epilogue, count)]``: the first
    replaces, the later ones combine, the last one applies the epilogue (the performance
    model's `tessera.sim.perf._k_chunks`)."""
    from tessera.sim.perf import _k_chunks
    return _k_chunks(total, size, epilogue)


def n_blocks(total, size):
    """Column-tile blocks: ``[(n-tiles, count)]`` (blocks of ``size``, then the rest;
    `tessera.sim.perf._split`)."""
    from tessera.sim.perf import _split
    return _split(total, size)


def plan_ws(m, n, k_tiles, *, rows, cols, depths, accumulate, p_depth=None, cost=None):
    """Block an M x N GEMM of ``k_tiles`` K tiles into weight-stationary RUNs.

    Returns ``(m_per_run, n_tiles_per_run, k_tiles_per_run)``. Each candidate K chunk (the
    whole K, or on a core that accumulates any shorter chunk A and B hold) gives the most
    output rows A and C hold, cut into balanced M blocks (a pass of m rows takes
    ``max(m, rows)`` cycles: a small remainder block would waste the weight bursts), and the
    most n-tiles B and C (and the parameter store) hold. ``cost(m, n_tiles, k_tiles,
    accumulate, epilogue)`` (a RUN's cycles, `run_cycles`) picks the candidate of the fewest
    cycles, then the fewest RUNs, then the longest chunk; without it, the whole K. Raises
    ValueError, naming the sizes, if nothing fits.
    """
    R = rows
    da, db, dc = depths
    kc_max = min(k_tiles, da, db // R)
    if kc_max < 1:
        raise ValueError(f"scratchpad B (depth {db}) cannot hold one weight tile ({R} words)")
    if kc_max < k_tiles and not accumulate:
        raise ValueError(f"K of {k_tiles} tiles of {R} does not fit scratchpads of depth "
                         f"{da}/{db} and this core cannot accumulate across RUNs")
    nt_all = -(-n // cols)

    def blocking(kc):
        mb = max(1, min(m, da // kc, dc, 0xFFFF))
        mb = -(-m // -(-m // mb))                       # balanced: ceil(m / blocks)
        nt = max(1, min(nt_all, db // (kc * R), dc // mb, 0xFFFF))
        if p_depth is not None:
            nt = min(nt, p_depth)
        return mb, nt, kc

    chunks = [kc_max] if cost is None or not accumulate else range(1, kc_max + 1)
    best = None
    for kc in chunks:
        mb, nt, _ = blocking(kc)
        if cost is None:
            return mb, nt, kc
        cycles = runs = 0
        for mc, cm in balanced(m, -(-m // mb)):
            for nc, cn in n_blocks(nt_all, nt):
                for kk, acc, epi, ck in k_chunks(k_tiles, kc, p_depth is not None):
                    cycles += cm * cn * ck * cost(mc, nc, kk, acc, epi)
                    runs += cm * cn * ck
        key = (cycles, runs, -kc)
        if best is None or key < best[0]:
            best = (key, (mb, nt, kc))
    return best[1]


class GemmWSMapper:
    """Host side of the weight-stationary engine: blocks a GEMM into RUNs, lays out the A
    words (one output row's ``rows`` lanes of a K tile each), moves them.

    K is padded to whole K tiles of ``rows`` lanes (with the kind's `PEKind.k_pad` pair,
    whose product adds nothing), N to whole column tiles; M is not padded (a pass streams any number of rows)."""

    def __init__(self, cfg):
        self.cfg = cfg

    def plan(self, m, n, k_words, *, epilogue=False, b_depth=None, mode=None):
        """``(m_rows, n_tiles, k_tiles)`` per RUN (`plan_ws`)."""
        g = self.cfg.geometry
        depths = [s.depth for s in g.stores[:3]]
        if b_depth is not None:
            depths[1] = b_depth
        twin = self.cfg.engine.twin()
        e = twin.epilogue

        def cost(mc, nt, kt, acc, epi):
            return run_cycles(mc, nt, kt, acc, epi, rows=g.rows, cols=g.cols, extra=twin.extra,
                              acc_latency=twin.combiner_latency,
                              epilogue_latency=e.latency if e is not None else 0,
                              ii=self.cfg.pe.ii(mode))
        return plan_ws(m, n, -(-k_words // g.rows), rows=g.rows, cols=g.cols,
                       depths=tuple(depths), accumulate=self.cfg.pe.combiner() is not None,
                       p_depth=g.store("p").depth if epilogue else None, cost=cost)

    def overlaps(self, drv, *, epilogue=False, resident=False):
        """Whether `gemm` runs ping-pong (`PingPong.possible` on A, B and, with the
        epilogue, P)."""
        return PingPong.possible(drv, self.cfg.geometry,
                                 ["a", "b"] + (["p"] if epilogue else []))

    async def gemm(self, drv, a, b, *, progress=None, mode=None, epilogue=None):
        """``a @ b`` (element codes) on the core; returns (M x N result codes, `GemmStats`).
        ``epilogue`` as in `tessera.sim.engines.gemm_os.GemmMapper.gemm`."""
        from tessera.sim.driver import GemmStats
        pe, g = self.cfg.pe, self.cfg.geometry
        lay = pe.layout(mode)
        a, b = gemm_operands_checked(a, b)
        m, k = a.shape
        n = b.shape[1]
        R, C = g.rows, g.cols
        kw = lay.k_per_word
        kp = -(-k // (kw * R)) * kw * R              # whole K tiles
        np_ = -(-n // C) * C
        pad_a, pad_b = pe.k_pad(mode)               # K padding: products that add nothing
        a_p = np.full((m, kp), pad_a, dtype=np.uint64)
        a_p[:, :k] = a
        b_p = np.zeros((kp, np_), dtype=np.uint64)
        b_p[k:, :] = pad_b
        b_p[:k, :n] = b
        a_l = lay.pack_a(a_p)                    # M x K words' lanes
        b_l = lay.pack_b(b_p.T).T                # K lanes x N
        kt_all = kp // kw // R
        epi, params, run_fields, epi_flags = epilogue_setup(self.cfg, epilogue, n, np_)
        mb, nt_run, kc = self.plan(m, n, kt_all * R, epilogue=epilogue is not None,
                                   mode=mode)
        extra = {"mode": pe.mode_code(mode)} if pe.modes else {}
        extra.update(run_fields)
        lpw = C * epi.lanes_per_channel if epi is not None else 0
        out = np.zeros((m, np_), dtype=np.uint64)
        stats = GemmStats(k_split=R * kw)         # each K tile is summed on its own
        result = "c" if epi is None else "r"
        ex = executor(self.overlaps(drv, epilogue=epi is not None), drv, g,
                      counter(stats, progress))
        sizes = [size for size, count in balanced(m, -(-m // mb)) for _ in range(count)]
        for mi, mc in enumerate(sizes):
            m0 = sum(sizes[:mi])
            for n0 in range(0, np_ // C, nt_run):
                nt = min(nt_run, np_ // C - n0)
                if epi is not None:
                    await ex.write("p", 0, params[n0 * lpw:(n0 + nt) * lpw].reshape(nt, lpw))
                for k0 in range(0, kt_all, kc):
                    kk = min(kc, kt_all - k0)
                    flags = FLAG_ACCUMULATE if k0 > 0 else 0
                    if epi is not None and k0 + kk >= kt_all:
                        flags |= FLAG_EPILOGUE | epi_flags
                    await ex.write("a", 0, ws_a_words(a_l[m0:m0 + mc, k0 * R:(k0 + kk) * R],
                                                      R))
                    b_blk = b_l[k0 * R:(k0 + kk) * R, n0 * C:(n0 + nt) * C]
                    await ex.write("b", 0, ws_b_words(b_blk, C))
                    await ex.run(m=mc, n_tiles=nt, k_tiles=kk, a_base=0, b_base=0, c_base=0,
                                 flags=flags, **({"p_base": 0} if epi is not None else {}),
                                 **extra)

                def place(words, m0=m0, mc=mc, n0=n0, nt=nt):
                    out[m0:m0 + mc, n0 * C:(n0 + nt) * C] = ws_c_matrix(words, mc, nt, C)
                await ex.read(result, 0, mc * nt, place)
                ex.end_block()
        await ex.finish()
        return out[:m, :n], stats

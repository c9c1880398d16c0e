"""Golden twin of `tessera.hdl.engine.gemm_os.GemmOSEngine`: results, check and cycles."""

import numpy as np

from tessera.hdl.engine.params import accumulate_latency
from tessera.hdl.ctrl.protocol import Err
from tessera.hdl.engine.params import CHECK_CYCLES, FLAG_ACCUMULATE, FLAG_EPILOGUE
from tessera.sim.engines.gemm_host import epilogue_setup, gemm_operands_checked
from tessera.sim.engines.model import evaluate
from tessera.sim.pingpong import counter


__all__ = ["GemmOSTwin", "GemmMapper", "cycle_model", "plan_gemm", "CHECK_CYCLES"]


def cycle_model(*, rows, cols, pe_latency, pe_ii, combiner_latency, epilogue_latency=None):
    """Busy cycles of a RUN as an expression tree in ``m_tiles``, ``n_tiles``, ``k``,
    ``accumulate`` and, when ``pe_ii`` is a per-mode tuple, ``mode``
    (`tessera.sim.engines.model`); the RTL must meet it exactly.

    The schedule: `CHECK_CYCLES` + 1 cycles of argument checks; the tiles are issued back to
    back, each taking ``P = max(k * ii, rows, cols)`` cycles, with operand pair ``kk`` of a
    tile issued at cycle ``kk * ii`` of its period; after the last pair of the last tile it
    takes 2 (store read, operand register) + ``pe_latency`` + ``cols`` (systolic skew) + 1 (array output
    register) + ``rows`` (drain, one row per cycle) + 1 (output write) cycles, plus the
    combiner latency when accumulating, plus ``epilogue_latency`` with the epilogue flag
    (a term present only for cores with an epilogue), until the last result is stored; busy
    falls one cycle later.
    """
    if isinstance(pe_ii, int):
        ii = pe_ii
    else:                    # II chosen by the RUN's mode field (codes with mode 0's II
        ii = pe_ii[0]        # need no test: one value for all modes is a plain number)
        for code in range(1, len(pe_ii)):
            if pe_ii[code] != pe_ii[0]:
                ii = ["if", ["==", "mode", code], pe_ii[code], ii]
    period = ["max", ["*", "k", ii], rows, cols]
    tiles = ["*", "m_tiles", "n_tiles"]
    last_issue = ["*", ["-", "k", 1], ii]
    model = ["+", CHECK_CYCLES + 1, ["*", ["-", tiles, 1], period], last_issue,
             2 + pe_latency + cols + rows + 2, ["if", "accumulate", combiner_latency, 0]]
    if epilogue_latency is not None:
        model.append(["if", "epilogue", epilogue_latency, 0])
    return model


class GemmOSTwin:
    """What a GEMM RUN does to the stores and how many cycles it takes.

    Parameters
    ----------
    rows, cols : int
    pe : PEKind
        The PE kind config (its twin computes a tile, its combiner accumulates).
    geometry : Geometry
    epilogue : Epilogue or None
        The PE kind's epilogue when the core has one (stores ``p`` and ``r``).
    """

    check_cycles = CHECK_CYCLES

    def __init__(self, *, rows, cols, pe, geometry, epilogue=None, chain=False):
        self.rows, self.cols = rows, cols
        #: The core has the chain writer (`tessera.hdl.engine.chain.TransposeChain`): a RUN
        #: whose ``chain`` names A writes its epilogue rows there transposed (`run`).
        self.chain = bool(chain) and epilogue is not None
        self.takes_chain = self.chain
        self.pe = pe
        self.tile_model = pe.twin()
        self.combiner = pe.combiner()
        self.depths = {s.name: s.depth for s in geometry.stores}
        ii = tuple(pe.ii(m) for m in pe.modes) if pe.modes else pe.ii()
        self.epilogue = epilogue
        self.model = cycle_model(rows=rows, cols=cols, pe_latency=pe.latency,
                                 pe_ii=ii, combiner_latency=self.combiner_latency,
                                 epilogue_latency=epilogue.latency if epilogue else None)

    @property
    def combiner_latency(self):
        return accumulate_latency(self.combiner)

    def check(self, args):
        """The error code the argument check gives (0: the RUN proceeds)."""
        mt, nt, k, flags = args["m_tiles"], args["n_tiles"], args["k"], args["flags"]
        allowed = FLAG_ACCUMULATE | ((FLAG_EPILOGUE | self.epilogue.flag_mask())
                                     if self.epilogue else 0)
        if mt == 0 or nt == 0 or k == 0 or flags & ~allowed & 0xFF \
                or (flags & FLAG_ACCUMULATE and self.combiner is None):
            return Err.ARG
        if "mode" in args and args["mode"] >= max(1, len(self.pe.modes)):
            return Err.ARG
        if args["a_base"] + mt * k > self.depths["a"] or args["b_base"] + nt * k > self.depths["b"] \
                or args["c_base"] + mt * nt * self.rows > self.depths["c"] \
                or (flags & FLAG_EPILOGUE and args["p_base"] + nt > self.depths["p"]):
            return Err.TILE
        if self.chain and args.get("chain") and args["chain_base"] + (mt - 1) \
                * args["chain_stride"] + nt * self.cols > self.depths["a"]:
            return Err.TILE
        return Err.OK

    def env(self, args):
        env = {"m_tiles": args["m_tiles"], "n_tiles": args["n_tiles"], "k": args["k"],
               "accumulate": args["flags"] & FLAG_ACCUMULATE}
        if self.epilogue:
            env["epilogue"] = args["flags"] & FLAG_EPILOGUE
        if "mode" in args:
            env["mode"] = args["mode"]
        return env

    def run(self, stores, args):
        """Execute a checked RUN on ``stores`` ({name: depth x lanes codes}); returns cycles.

        A chaining RUN (``args["chain"]``, on a core with the chain writer) writes each
        tile's epilogue rows into ``stores["chain"]`` (the bank of A it goes to) transposed:
        word ``chain_base + mi*chain_stride + ni*cols + c``, lane r = row r's lane c; it takes
        ``cols`` cycles more (the writer's last tile)."""
        chain = stores.get("chain") if self.chain and args.get("chain") else None
        mt, nt, k = args["m_tiles"], args["n_tiles"], args["k"]
        acc = bool(args["flags"] & FLAG_ACCUMULATE)
        epi = bool(args["flags"] & FLAG_EPILOGUE)
        mode = self.pe.modes[args["mode"]] if "mode" in args and self.pe.modes else None
        A, B, Cm = stores["a"], stores["b"], stores["c"]
        R = self.rows
        batch = getattr(self.tile_model, "tiles", None)   # optional: all tiles in one pass
        if batch is not None:
            a_all = np.asarray(A[args["a_base"]:args["a_base"] + mt * k])
            b_all = np.asarray(B[args["b_base"]:args["b_base"] + nt * k])
            every = batch(a_all.reshape(mt, k, -1), b_all.reshape(nt, k, -1), mode=mode)
        for mi in range(mt):
            a_words = A[args["a_base"] + mi * k:args["a_base"] + (mi + 1) * k]
            for ni in range(nt):
                b_words = B[args["b_base"] + ni * k:args["b_base"] + (ni + 1) * k]
                res = every[mi, ni] if batch is not None else \
                    self.tile_model.tile(a_words, b_words, mode=mode)
                base = args["c_base"] + (mi * nt + ni) * R
                if acc:
                    res = self.combiner.twin(Cm[base:base + R], res)
                if epi and chain is not None:
                    out = np.asarray(self._epilogue(stores, args, ni, res))   # R x C
                    at = args["chain_base"] + mi * args["chain_stride"] + ni * self.cols
                    chain[at:at + self.cols] = out.T
                elif epi:
                    stores["r"][base:base + R] = self._epilogue(stores, args, ni, res)
                else:
                    Cm[base:base + R] = res
        ii = self.pe.ii(mode) if mode is not None else self.pe.ii()
        self.compute_cycles = mt * nt * k * ii     # COUNTERS compute: k x ii per tile
        extra = self.cols if chain is not None and epi else 0
        return evaluate(self.model, self.env(args)) + extra

    def _epilogue(self, stores, args, ni, res):
        """Epilogue output codes of one tile (R x C accumulator codes), parameters from word
        ``p_base + ni``."""
        e = self.epilogue
        chan = dict(zip((f.name for f in e.channel_fields),
                        e.unpack_params(stores["p"][args["p_base"] + ni])))
        return e.apply_codes(res, chan, e.run_values(args))

    def perf(self, args, *, macs=None):
        """``predict`` (cycles of this RUN) and ``ideal`` (its lane-pair products over the PEs,
        or ``macs`` over the PEs when the caller knows the useful MACs)."""
        mode = self.pe.modes[args["mode"]] if "mode" in args and self.pe.modes else None
        per_pair = self.pe.layout(mode).k_per_word
        pairs = args["m_tiles"] * self.rows * args["n_tiles"] * self.cols * args["k"]
        work = pairs * per_pair if macs is None else macs
        return {"predict": evaluate(self.model, self.env(args)),
                "ideal": work / (self.rows * self.cols * per_pair / self.pe.ii(mode))}

    def reads(self, args):
        """Scratchpad words a checked RUN reads, per store: A and B one word each per operand
        pair of every tile (the tiles re-read their rows and columns), C one per combining
        result word (the output stage's read before the combine), P one per epilogue word."""
        tiles = args["m_tiles"] * args["n_tiles"]
        words = tiles * self.rows
        return {"a": tiles * args["k"], "b": tiles * args["k"],
                "c": words if args["flags"] & FLAG_ACCUMULATE else 0,
                "p": words if args["flags"] & FLAG_EPILOGUE else 0}

    def bad_runs(self):
        """RUNs the argument check must refuse, with their error codes."""
        da, dc = self.depths["a"], self.depths["c"]
        return [({"m_tiles": 1, "n_tiles": 1, "k": da + 1}, Err.TILE),
                ({"m_tiles": dc // self.rows + 1, "n_tiles": 1, "k": 1}, Err.TILE),
                ({"m_tiles": 0, "n_tiles": 1, "k": 1}, Err.ARG),
                ({"m_tiles": 1, "n_tiles": 1, "k": 1, "flags": 0x80}, Err.ARG)]

    def busy_run(self, need):
        """The shortest RUN that fits the scratchpads and, by the cycle model, stays busy for
        ``need`` cycles: (fields, cycles, preload) (no store contents needed), or None."""
        da, db, dc = self.depths["a"], self.depths["b"], self.depths["c"]
        best = None
        ks = sorted({1, 2, 4, 8, 16, 32, 64, min(da, db)} & set(range(1, min(da, db) + 1)))
        for k in ks:
            for mt in range(1, min(da // k, dc // self.rows, 64) + 1):
                nt = min(db // k, (dc // self.rows) // mt, 64)
                if nt < 1:
                    continue
                env = {"m_tiles": mt, "n_tiles": nt, "k": k, "accumulate": 0}
                if self.epilogue:
                    env["epilogue"] = 0
                if self.pe.modes:
                    env["mode"] = 0
                cycles = evaluate(self.model, env)
                if cycles >= need and (best is None or cycles < best[1]):
                    best = ({"m_tiles": mt, "n_tiles": nt, "k": k}, cycles, {})
        return best


def plan_gemm(m, n, k, *, rows, cols, depths, accumulate, split_free=False):
    """Split an M x N x K GEMM (K in words) into RUNs that fit the stores.

    Returns ``(m_tiles_per_run, n_tiles_per_run, k_per_run)``: the largest blocking
    (preferring the whole K, then as many tiles as fit) such that the A, B and C regions fit.
    With ``split_free`` (the core accumulates across RUNs with an associative combiner, so a
    split of K changes no result), the K chunk is instead chosen to make the fewest RUNs (each
    RUN pays its argument check, fill and drain), the longest chunk among equals.
    Raises ValueError, naming the sizes, if nothing fits.
    """
    R, C = rows, cols
    da, db, dc = depths
    mt_all, nt_all = -(-m // R), -(-n // C)
    kc = min(k, da, db)
    if not accumulate and kc < k:
        raise ValueError(f"K={k} does not fit scratchpads of depth {da}/{db} and this core "
                         f"cannot accumulate across RUNs")
    if dc < R or kc < 1:
        raise ValueError(f"scratchpad C (depth {dc}) cannot hold one {R}-row tile")

    def blocking(kc):
        mt = max(1, min(mt_all, da // kc))
        nt = max(1, min(nt_all, db // kc, (dc // R) // mt))
        mt = max(1, min(mt, (dc // R) // nt))
        runs = -(-mt_all // mt) * -(-nt_all // nt) * -(-k // kc)
        return runs, mt, nt

    best = (*blocking(kc)[1:], kc)
    if split_free and accumulate and k > 1:
        runs = blocking(kc)[0]
        for parts in range(2, min(k, 256) + 1):
            c = -(-k // parts)
            if c > kc:
                continue
            r, mt, nt = blocking(c)
            if r < runs:
                runs, best = r, (mt, nt, c)
    return best


class GemmMapper:
    """Host side of the GEMM engine: blocks a GEMM into RUNs and moves the tiles.

    Elements are packed into lanes by the PE kind's `OperandLayout` (one element per lane
    for ``int`` and ``fpmac``), so K counts words: K elements / ``k_per_word``.
    """

    def __init__(self, cfg):
        self.cfg = cfg

    def plan(self, m, n, k_words, *, epilogue=False, b_depth=None):
        """``(m_tiles, n_tiles, k_words)`` per RUN (`plan_gemm`); ``b_depth``: plan within a
        region of B of that many words instead of the whole store (resident weights: the
        whole K per RUN, so every RUN reads the same region). K is split freely (fewest RUNs)
        when the PE kind's combiner is associative."""
        g = self.cfg.geometry
        depths = [s.depth for s in g.stores[:3]]
        if b_depth is not None:
            depths[1] = b_depth
        comb = self.cfg.pe.combiner()
        mt, nt, kc = plan_gemm(m, n, k_words, rows=g.rows, cols=g.cols, depths=tuple(depths),
                               accumulate=comb is not None,
                               split_free=b_depth is None and getattr(comb, "associative",
                                                                      False))
        if epilogue:                  # one parameter word per n-tile of a RUN
            nt = min(nt, g.store("p").depth)
        return mt, nt, kc

    def resident_words(self, m, n, k_words, *, epilogue=False):
        """Words of B that hold the whole weight matrix of an M x N x K GEMM so that it is
        written once (every RUN reads it from the same region), or None if the GEMM cannot
        run that way (B too small, or A, C or the parameter store cut N into blocks)."""
        g = self.cfg.geometry
        nt_all = -(-n // g.cols)
        need = k_words * nt_all
        if need > g.store("b").depth:
            return None
        try:
            _, nt, kc = self.plan(m, n, k_words, epilogue=epilogue, b_depth=need)
        except ValueError:
            return None
        return need if (nt, kc) == (nt_all, k_words) else None

    async def gemm(self, drv, a, b, *, progress=None, mode=None, epilogue=None):
        """``a @ b`` (element codes) on the core; returns (M x N result codes, `GemmStats`).

        ``epilogue``: None (results are accumulator codes from store C), or the epilogue's
        parameters (`Epilogue.user_params`: one array of length N per channel field, e.g. the
        integer epilogue's ``bias``, ``mult`` and ``shift``, and a value per run or flag
        field, e.g. ``zero_point``, ``lo``, ``hi``): the parameter store is loaded per block
        of n-tiles, the last K chunk's RUN sets `FLAG_EPILOGUE` (and the epilogue's flag
        bits), and the results are the epilogue's ``out_bits`` codes read from store R.
        """
        from tessera.sim.driver import GemmStats
        from tessera.sim.layout import tile_a, tile_b, untile_c
        pe, g = self.cfg.pe, self.cfg.geometry
        lay = pe.layout(mode)
        a, b = gemm_operands_checked(a, b)
        m, k = a.shape
        n = b.shape[1]
        R, C = g.rows, g.cols
        kw = lay.k_per_word
        kp = -(-k // kw) * kw
        mp, np_ = -(-m // R) * R, -(-n // C) * C
        a_p = np.zeros((mp, kp), dtype=np.uint64)
        a_p[:m, :k] = a
        b_p = np.zeros((kp, np_), dtype=np.uint64)
        b_p[:k, :n] = b
        a_w = lay.pack_a(a_p)                 # mp x K words
        b_w = lay.pack_b(b_p.T).T             # K words x np
        k_words = kp // kw
        epi, params, run_fields, epi_flags = epilogue_setup(self.cfg, epilogue, n, np_)
        # Weight placement (`tessera.sim.qnet.run_network` with a resident driver): B tiles go
        # to the driver's region ``(base, words)`` of B, else from word 0.
        b_base, b_words = getattr(drv, "b_region", None) or (0, None)
        mt_run, nt_run, kc = self.plan(m, n, k_words, epilogue=epilogue is not None,
                                       b_depth=b_words)
        extra = {"mode": pe.mode_code(mode)} if pe.modes else {}
        extra.update(run_fields)
        out = np.zeros((mp, np_), dtype=np.uint64)
        stats = GemmStats(k_split=kc * kw)
        mt_all, nt_all = mp // R, np_ // C
        result = "c" if epi is None else "r"
        lpw = C * epi.lanes_per_channel if epi is not None else 0

        def blocks():
            """Per block of output tiles: (m0, mt, n0, nt, [RUN steps]); a step is (A tile,
            B tile, RUN fields)."""
            for m0 in range(0, mt_all, mt_run):
                mt = min(mt_run, mt_all - m0)
                for n0 in range(0, nt_all, nt_run):
                    nt = min(nt_run, nt_all - n0)
                    steps = []
                    for k0 in range(0, k_words, kc):
                        kk = min(kc, k_words - k0)
                        flags = FLAG_ACCUMULATE if k0 > 0 else 0
                        if epi is not None and k0 + kk >= k_words:
                            flags |= FLAG_EPILOGUE | epi_flags
                        steps.append((tile_a(a_w[m0 * R:(m0 + mt) * R, k0:k0 + kk], R),
                                      tile_b(b_w[k0:k0 + kk, n0 * C:(n0 + nt) * C], C),
                                      dict(m_tiles=mt, n_tiles=nt, k=kk, flags=flags,
                                           b_base=b_base, **extra)))
                    yield m0, mt, n0, nt, steps

        count = counter(stats, progress)

        def place(block, words):
            m0, mt, n0, nt, _ = block
            out[m0 * R:(m0 + mt) * R, n0 * C:(n0 + nt) * C] = untile_c(words, mt, nt, R, C)

        if not self.overlaps(drv, epilogue=epi is not None, resident=b_words is not None):
            for block in blocks():
                n0, nt = block[2], block[3]
                if epi is not None:
                    await drv.write("p", 0, params[n0 * lpw:(n0 + nt) * lpw].reshape(nt, lpw))
                for a_t, b_t, fields in block[4]:
                    await drv.write("a", 0, a_t)
                    await drv.write("b", b_base, b_t)
                    count(await drv.run(**fields))
                place(block, await drv.read(result, 0, block[1] * block[3] * R))
            return out[:m, :n], stats

        # Ping-pong: RUN i reads bank i % 2 of A (and of B unless the weights are resident in
        # bank 0); block j accumulates into bank j % 2 of the result stores (and reads bank
        # j % 2 of P). Each RUN is sent while the one before executes (the core holds it and
        # starts it the cycle that one completes); the host then reads the finished block's
        # results from the other bank and writes the next tiles while the array computes.
        g = self.cfg.geometry
        ids = {s.name: s.id for s in g.stores}
        depth = {s.name: s.depth for s in g.stores}
        run_no, pending, last = 0, None, None
        for j, block in enumerate(blocks()):
            rb = j % 2
            n0, nt = block[2], block[3]
            if epi is not None:
                await drv.write("p", rb * depth["p"],
                                params[n0 * lpw:(n0 + nt) * lpw].reshape(nt, lpw))
            for a_t, b_t, fields in block[4]:
                ob = run_no % 2
                await drv.write("a", ob * depth["a"], a_t)
                b_bank = 0 if b_words is not None else ob
                await drv.write("b", b_bank * depth["b"] + b_base, b_t)
                banks = (ob << ids["a"]) | (b_bank << ids["b"]) | (rb << ids[result])
                if result == "r":
                    banks |= (rb << ids["c"]) | (rb << ids["p"])
                await drv.start(banks=banks, **fields)
                run_no += 1
                if last is not None:
                    count((await drv.status()).prev_cycles)
                last = fields
                if pending is not None:          # its last RUN completed: this one started
                    pb, pblock = pending
                    place(pblock, await drv.read(result, pb * depth[result],
                                                 pblock[1] * pblock[3] * R))
                    pending = None
            pending = (rb, block)
        count((await drv.wait()).cycles)
        pb, pblock = pending
        place(pblock, await drv.read(result, pb * depth[result], pblock[1] * pblock[3] * R))
        return out[:m, :n], stats

    def chains(self):
        """Whether this core can chain dense layers (`chain`): it builds the chain writer
        (``array.chain``)."""
        return self.cfg.engine.chains()

    async def chain(self, drv, a, layers, *, progress=None):
        """Dense layers back to back on chip: ``a`` (M x K0 element codes) goes in once, each
        layer's epilogue rows go through the chain writer into store A as the next layer's A
        words (RUN ``chain``), and only the last layer's outputs come out.

        ``layers``: ``[(B codes K x N, epilogue)]``, each layer's K the previous one's N;
        every layer but the last with the epilogue (`Epilogue.user_params`; the last may have
        None: its accumulator codes then come from C). A layer's N is padded to whole column
        tiles and the next layer reads the padding too (its weight rows there are 0, so it
        adds nothing). Every layer's B and P words get their own regions when they all fit (a
        resident driver sends them once across images), else each layer's go from word 0
        before its RUNs; one RUN per block of n-tiles with all the rows and the whole K. A of two banks: layer l reads bank l % 2 and writes the other; one bank:
        two regions of A take turns. Returns (M x N_last result codes, `GemmStats`).

        Raises ValueError (naming what does not fit) if the core has no chain writer or the
        regions do not fit."""
        from tessera.sim.driver import GemmStats
        from tessera.sim.layout import tile_a, tile_b, untile_c
        if not self.chains():
            raise ValueError("chain: this core has no chain writer (array.chain = true, with "
                             "the epilogue)")
        g, pe = self.cfg.geometry, self.cfg.pe
        R, C = g.rows, g.cols
        epi = self.cfg.engine.epilogue()
        a = np.asarray(a, dtype=np.uint64)
        M, K = a.shape
        mt_all = -(-M // R)
        prep = []
        for i, (b, epilogue) in enumerate(layers):
            b = np.asarray(b, dtype=np.uint64)
            if b.shape[0] != (K if i == 0 else layers[i - 1][0].shape[1]):
                raise ValueError(f"chain: layer {i} takes K={b.shape[0]}, the one before gives "
                                 f"{K if i == 0 else layers[i - 1][0].shape[1]}")
            if epilogue is None and i < len(layers) - 1:
                raise ValueError(f"chain: layer {i} has no epilogue; only the last may go "
                                 f"without one")
            n = b.shape[1]
            np_ = -(-n // C) * C
            b_p = np.zeros((K, np_), dtype=np.uint64)
            b_p[:b.shape[0], :n] = b
            L = dict(K=K, n=n, np=np_, nt_all=np_ // C, b=tile_b(b_p, C), p=None, extra={},
                     flags=0)
            if epilogue is not None:
                _, params, L["extra"], flags = epilogue_setup(self.cfg, epilogue, n, np_)
                L["p"] = params.reshape(np_ // C, C * epi.lanes_per_channel)
                L["flags"] = FLAG_EPILOGUE | flags
            prep.append(L)
            K = np_
        d = {s.name: s.depth for s in g.stores}
        # Every layer's B and P words in their own regions when all fit (written once, kept
        # across images by a resident driver), else each layer's from word 0 before its RUNs.
        b_base = p_base = 0
        for L in prep:
            L.update(b_base=b_base, p_base=p_base)
            b_base += L["nt_all"] * L["K"]
            p_base += L["nt_all"] if L["p"] is not None else 0
        placed = b_base <= d["b"] and p_base <= d.get("p", 0)
        if not placed:
            for L in prep:
                L.update(b_base=0, p_base=0)
                if L["nt_all"] * L["K"] > d["b"] or (L["p"] is not None
                                                     and L["nt_all"] > d["p"]):
                    raise ValueError(f"chain: a layer's weights ({L['nt_all'] * L['K']} words "
                                     f"of B) or parameters do not fit ({d['b']} words)")
        banked = g.store("a").banks == 2
        span = mt_all * max(L["K"] for L in prep)
        regions = (0, 0) if banked else (0, span)
        if regions[1] + span > d["a"]:
            raise ValueError(f"chain: {M} rows of the layers' activations need "
                             f"{regions[1] + span} words of A, the core has {d['a']}")
        nt_run = (d["c"] // R) // mt_all
        if nt_run < 1:
            raise ValueError(f"chain: {M} rows do not fit C ({d['c']} words)")
        async def load(L):
            await drv.write("b", L["b_base"], L["b"])
            if L["p"] is not None:
                await drv.write("p", L["p_base"], L["p"])
        if placed:
            for L in prep:
                await load(L)
        a_p = np.zeros((mt_all * R, prep[0]["K"]), dtype=np.uint64)
        a_p[:M, :a.shape[1]] = a
        await drv.write("a", 0, tile_a(a_p, R))
        stats = GemmStats(k_split=0)
        a_id = g.store("a").id
        out = None
        for li, L in enumerate(prep):
            last = li == len(prep) - 1
            cur = li % 2
            if not placed:
                await load(L)
            for n0 in range(0, L["nt_all"], nt_run):
                nt = min(nt_run, L["nt_all"] - n0)
                fields = dict(m_tiles=mt_all, n_tiles=nt, k=L["K"], a_base=regions[cur],
                              b_base=L["b_base"] + n0 * L["K"], c_base=0, flags=L["flags"],
                              **L["extra"])
                if L["p"] is not None:
                    fields["p_base"] = L["p_base"] + n0
                if not last:
                    fields.update(chain_base=regions[1 - cur] + n0 * C, chain_stride=L["np"])
                cyc = await drv.run(banks=(cur << a_id) if banked else 0,
                                    chain=0 if last else a_id + 1, **fields)
                stats.runs += 1
                stats.cycles += cyc
                stats.run_cycles.append(cyc)
                if progress:
                    progress(stats)
                if last:
                    if out is None:
                        out = np.zeros((mt_all * R, L["np"]), dtype=np.uint64)
                    words = await drv.read("r" if L["p"] is not None else "c", 0,
                                           mt_all * nt * R)
                    out[:, n0 * C:(n0 + nt) * C] = untile_c(words, mt_all, nt, R, C)
        return out[:M, :prep[-1]["n"]], stats

    def overlaps(self, drv, *, epilogue=False, resident=False):
        """Whether `gemm` runs ping-pong: the driver allows it (``drv.overlap``) and every
        store it writes or reads per RUN has two banks (A; B unless the weights are
        resident; the result stores, and P with the epilogue)."""
        if not getattr(drv, "overlap", False):
            return False
        g = self.cfg.geometry
        need = ["a", "c"] + ([] if resident else ["b"]) + (["p", "r"] if epilogue else [])
        return all(g.store(n).banks == 2 for n in need)

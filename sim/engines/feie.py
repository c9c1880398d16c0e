"""Golden twin and host mapper of the FEIE / ZASCA convolution engine (``array.kind = "feie"``).

The schedule (docs/feie.md, `tessera.hdl.engine.feie.FeieEngine`): a RUN computes ``rows``
output rows of ``ow`` outputs each for ``tiles`` output channels at once. Its input is a
stream of activation *entries* in position order; an entry is a non-zero input pixel with its
position: output row ``row`` (within the RUN), padded column ``col`` and sub-position ``q``
(the (input channel, filter row) pair, the W word holding that filter row for every tile).

One entry is broadcast per cycle to the ``P`` PEs of every tile (zero skipping, ZASCAS); with
the dense flag (ZASCAD) every position ``(row, col, q)`` costs one cycle, zeros included.
Output ``g = row * ow + j`` lives in PE ``g mod P``; the pixel at ``col`` adds
``x * w[q][k]`` to each output ``j`` with ``k = col - stride * j`` in ``0..K-1``. A PE that
must start a new output moves its finished partial sum into its done queue (depth
`DONE_DEPTH`; the broadcast stalls while a needed queue is full). A flush walker writes the
outputs in order, one result word (``tiles`` lanes) per cycle, each as soon as the broadcast
has passed its last column (from the done queue, the PE, or 0 for an output no pixel
reached).

`FeieTwin` follows that schedule cycle by cycle (outputs and the exact cycle count, the RTL
meets it); `predict` is the closed-form model; `FeieLowering` maps `Conv2d` (and GEMMs, as
1x1 convolutions) onto RUNs; `encode_rows` is the host's activation encoder.
"""

from dataclasses import dataclass, field

import numpy as np

from tessera.hdl.ctrl.protocol import Err
from tessera.hdl.engine.params import FLAG_ACCUMULATE, accumulate_latency
from tessera.sim.pingpong import PingPong, counter, executor


__all__ = ["FLAG_DENSE", "EntryLayout", "Schedule", "simulate", "predict", "plan_conv",
           "FeieTwin", "FeieLowering", "encode_rows", "CHECK_CYCLES", "START_CYCLES"]

#: RUN flag: dense mode (ZASCAD), one cycle per position, zeros included.
FLAG_DENSE = 0x04
#: Busy cycles of a RUN the argument check rejects (the check takes one cycle: ``rows * ow``
#: by a multiplier).
CHECK_CYCLES = 1
#: Busy cycles before the first RUN-state cycle (the check, which also issues the first A
#: read), and after the RUN state's last cycle (the output stage's write).
START_CYCLES = 1
END_CYCLES = 2


@dataclass(frozen=True)
class EntryLayout:
    """Bits of one activation entry (one A word, one lane): value (``act_bits``, lowest), then
    ``col`` (``col_bits``), ``q`` (``q_bits``) and ``row`` (``row_bits``)."""
    act_bits: int = 8
    col_bits: int = 8
    q_bits: int = 8
    row_bits: int = 8

    @property
    def bits(self):
        return self.act_bits + self.col_bits + self.q_bits + self.row_bits

    def pack(self, val, col, q, row):
        val, col = np.asarray(val, np.uint64), np.asarray(col, np.uint64)
        q, row = np.asarray(q, np.uint64), np.asarray(row, np.uint64)
        s1 = self.act_bits
        s2 = s1 + self.col_bits
        s3 = s2 + self.q_bits
        return (val | (col << np.uint64(s1)) | (q << np.uint64(s2))
                | (row << np.uint64(s3))).astype(np.uint64)

    def unpack(self, words):
        w = np.asarray(words, dtype=np.uint64)

        def f(lo, bits):
            return ((w >> np.uint64(lo)) & np.uint64((1 << bits) - 1)).astype(np.int64)
        s1 = self.act_bits
        s2 = s1 + self.col_bits
        s3 = s2 + self.q_bits
        return (f(0, self.act_bits), f(s1, self.col_bits), f(s2, self.q_bits),
                f(s3, self.row_bits))


def _signed(v, bits):
    v = int(v) & ((1 << bits) - 1)
    return v - (1 << bits) if v >> (bits - 1) else v


@dataclass
class Schedule:
    """What one RUN's schedule did: ``outputs`` (G x tiles Python ints, unwrapped), the
    RUN-state ``cycles``, the ``broadcasts`` (cycles that broadcast an entry or position),
    ``stalls`` (cycles the broadcast waited for a done queue) and, with ``trace``, per
    broadcast ``(entry index or None, [(pe, g, k), ...])``."""
    outputs: list
    cycles: int = 0
    broadcasts: int = 0
    stalls: int = 0
    trace: list = field(default_factory=list)


def simulate(entries, weights, *, rows, ow, wp, q, k, stride, pes, tiles, kmax, drain=1,
             dense=False, act_bits=8, w_bits=8, trace=False, done_depth=None):
    """Follow the RUN schedule cycle by cycle (the RTL's state machine, in Python).

    ``entries``: (val, col, q, row) codes per entry, in stream order; ``weights(qi)``: the W
    word of sub-position ``qi`` as ``tiles * kmax`` lane codes. Returns a `Schedule` whose
    ``cycles`` count the RUN state (the first broadcast in its first cycle).
    """
    vals, cols, qs, rws = (np.asarray(a, dtype=np.int64) for a in entries)
    E = len(vals)
    P, T, K, S = pes, tiles, k, stride
    D = drain + 2 if done_depth is None else done_depth
    V = P * drain
    G = rows * ow
    words = -(-G // V)
    live_v = [False] * P
    live_g = [0] * P
    live_val = [[0] * T for _ in range(P)]
    fifo = [[] for _ in range(P)]
    out = [[0] * T for _ in range(G)]
    # The entry pipeline: the check cycle read entry 0 from A; the first cycle moves it up
    # (and reads its W word), the second broadcasts it.
    e3 = None
    p2 = 0
    pos = 0                                  # dense: positions broadcast so far
    npos = rows * wp * q
    w = 0
    sch = Schedule(outputs=out)
    wcache = {}

    def wword(qi):
        if qi not in wcache:
            wcache[qi] = [_signed(c, w_bits) for c in weights(qi)]
        return wcache[qi]

    cycles = 0
    while w < words:
        cycles += 1
        # -- where the broadcast stands (start of cycle) ----------------------------------------
        if dense:
            end = pos >= npos
            cur = None if end else divmod(pos // q, wp)         # (row, col)
        else:
            end = e3 is None and p2 >= E
            cur = None if e3 is None else (int(rws[e3]), int(cols[e3]))
        # -- broadcast: what this cycle's entry (or position) does, from the state alone -----
        bcast = False
        apply_entry = False
        if dense:
            if not end and (e3 is not None or p2 >= E):
                prow, pcol = cur
                if e3 is not None and (int(rws[e3]), int(cols[e3]), int(qs[e3])) == \
                        (prow, pcol, pos % q):
                    apply_entry = True
                else:
                    bcast = True                  # a zero position: one cycle, no PE change
                    if trace:
                        sch.trace.append((None, []))
        else:
            apply_entry = e3 is not None
        plan, need_push, do_apply = [], [], False
        if apply_entry:
            row, col, qi = int(rws[e3]), int(cols[e3]), int(qs[e3])
            jhi = min(col // S, ow - 1)
            ghi = row * ow + jhi
            for p in range(P):
                t = (ghi % P - p) % P
                j = jhi - t
                kk = col - S * j
                if j >= 0 and kk < K:
                    plan.append((p, ghi - t, kk))
            need_push = [p for p, g, _ in plan if live_v[p] and live_g[p] != g]
            if any(len(fifo[p]) >= D for p in need_push):
                sch.stalls += 1                   # a needed done queue is full
            else:
                do_apply = True
        block = set(need_push) if do_apply else set()
        # -- drain: word w once the broadcast has passed the last column of its last output,
        # unless one of its outputs is a live sum the broadcast moves to a queue this cycle --
        rl, jl = divmod(min(w * V + V - 1, G - 1), ow)
        passed = end or (cur is not None and (cur[0] > rl or (cur[0] == rl
                                                             and cur[1] > S * jl + K - 1)))
        pops = [0] * P
        takes = set()
        if passed:
            word = []
            for ln in range(V):
                g = w * V + ln
                if g >= G:
                    continue
                p = ln % P
                hit = [s for s, (gg, _) in enumerate(fifo[p]) if gg == g]
                if hit:
                    assert hit == [pops[p]], "done queue out of order"
                    word.append((g, fifo[p][hit[0]][1]))
                    pops[p] += 1
                elif live_v[p] and live_g[p] == g:
                    word.append((g, list(live_val[p])))
                    takes.add(p)
            if takes & block:
                pops, takes = [0] * P, set()
            else:
                for g, val in word:
                    out[g] = val
                w += 1
        for p in range(P):
            del fifo[p][:pops[p]]
        # -- the broadcast's effect --------------------------------------------------------------
        consumed = False
        if do_apply:
            x = _signed(vals[e3], act_bits)
            wv = wword(qi)
            for p, g, kk in plan:
                prods = [x * wv[t * kmax + kk] for t in range(T)]
                if live_v[p] and live_g[p] == g:
                    assert p not in takes
                    live_val[p] = [a + b for a, b in zip(live_val[p], prods)]
                else:
                    assert p not in takes
                    if p in need_push:
                        fifo[p].append((live_g[p], live_val[p]))
                    live_v[p], live_g[p], live_val[p] = True, g, prods
            consumed = True
            bcast = True
            if trace:
                sch.trace.append((e3, [(p, g, kk) for p, g, kk in plan]))
        for p in takes:
            live_v[p] = False
        if bcast:
            sch.broadcasts += 1
            if dense:
                pos += 1
        # -- entry pipeline: the next entry (A already read) moves up as this one goes -------
        if consumed:
            e3 = None
        if e3 is None and p2 < E:
            e3, p2 = p2, p2 + 1
    sch.cycles = cycles
    return sch


def run_cycles(sched_cycles):
    """Busy cycles of an accepted RUN whose schedule took ``sched_cycles`` RUN-state cycles."""
    return START_CYCLES + sched_cycles + END_CYCLES


def predict(*, rows, ow, wp, q, k, stride, nonzeros, dense=False, pes=3, drain=1,
            col_counts=None):
    """Closed-form busy cycles of a RUN.

    Result word ``w`` (outputs ``w*V .. w*V + V - 1``, ``V = pes * drain``) can go once the
    broadcast has passed the last column ``lc_w`` of its last output (row ``r_w``): after the
    ``n_w`` broadcasts at positions up to ``(r_w, lc_w)``, that is at cycle
    ``a_w = n_w + 1 + fill`` (``fill`` = 1, the first entry's W read, when the RUN has
    entries). Words go one per cycle beside the broadcast, so the last one goes at
    ``max_w(a_w + words - 1 - w)``; plus the fixed start and end.

    ``n_w`` counts positions ``(row, column)`` in row-major order (every sub-position of a
    column together): dense (the RUN's dense flag), ``q`` broadcasts per position up to
    ``(r_w, lc_w)``, exact; skipping, the entries there: from ``col_counts`` (entries per
    position, ``rows * wp`` of them) when given, exact, or else ``nonzeros`` spread evenly
    over the columns an output reaches. Not counted: a cycle a word waits while its live sum enters a done
    queue, and broadcast stalls on a full done queue (`FeieTwin` gives the exact count)."""
    v = pes * drain
    G = rows * ow
    words = -(-G // v)
    w = np.arange(words, dtype=np.int64)
    r, j = np.divmod(np.minimum(w * v + v - 1, G - 1), ow)
    last = r * wp + np.minimum(stride * j + k - 1, wp - 1)      # index of (r_w, lc_w)
    if dense:
        n = (last + 1) * q
    elif col_counts is not None:
        cum = np.cumsum(np.asarray(col_counts, dtype=np.int64))
        if len(cum) != rows * wp or cum[-1] != nonzeros:
            raise ValueError(f"col_counts must hold rows * wp = {rows * wp} counts summing to "
                             f"nonzeros = {nonzeros}, not {len(cum)} summing to "
                             f"{int(cum[-1]) if len(cum) else 0}")
        n = cum[last]
    else:                     # evenly over the columns an output reaches (the only encoded)
        span = min(wp, stride * (ow - 1) + k)
        n = (nonzeros * (r * span + np.minimum(stride * j + k, span))) // (rows * span)
    fill = 1 if nonzeros else 0
    return START_CYCLES + END_CYCLES + int((n + fill + words - w).max())


# -- host encoder ------------------------------------------------------------------------------
def encode_rows(xp, *, ys, q_list, kh, stride_h, c0=0, keep=None, span=None):
    """Entries of output rows ``ys`` (relative rows 0..len(ys)-1) over the padded input
    ``xp`` (C x Hp x Wp codes, uint): for each row, column and sub-position ``q`` of
    ``q_list`` (pairs (c, i): input channel, filter row) the non-zero pixel
    ``xp[c, y*stride_h + i, col]``, in position order; with ``keep`` (a boolean array like
    ``xp``) also the zeros where it is true (ZASCAD on the image: every pixel, not the
    padding); columns from ``span`` on (those no output reaches) are left out. Returns
    (val, col, q, row) arrays."""
    vals, cols, qs, rws = [], [], [], []
    wp = xp.shape[2]
    for r, y in enumerate(ys):
        block = np.stack([xp[c, y * stride_h + i, :span] for c, i in q_list], axis=1)
        if keep is None:
            cc, qq = np.nonzero(block)
        else:
            kb = np.stack([keep[c, y * stride_h + i, :span] for c, i in q_list], axis=1)
            cc, qq = np.nonzero((block != 0) | kb)
        vals.append(block[cc, qq])
        cols.append(cc)
        qs.append(qq)
        rws.append(np.full(len(cc), r))
    del wp
    cat = (lambda a: np.concatenate(a).astype(np.int64) if a else np.zeros(0, np.int64))
    return cat(vals), cat(cols), cat(qs), cat(rws)


def plan_conv(cfg, x_shape, layer, nonzeros):
    """The RUNs `FeieLowering.conv` issues for a `Conv2d` (groups 1) on input ``x_shape``,
    from the entries per (image, chunk, output row) ``nonzeros`` (N x chunks x OH), or per
    (image, chunk, output row, padded column) (N x chunks x OH x WP: each RUN's `predict`
    then places its entries exactly), as events for the performance model:
    ``("run", groups, q, entries, predicted cycles, broadcasts)`` (``groups`` identical RUNs,
    one per group of ``tiles`` output channels) and ``("read", words, groups)`` (the C words
    read back after a block)."""
    a = cfg.array
    lower = FeieLowering(cfg)
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
    nb, o, oh, ow = layer.out_shape(x_shape)
    wpad = x_shape[3] + 2 * pw
    q_all = x_shape[1] * kh
    qc = lower.plan_q(q_all, wpad)
    chunk_q = [min(qc, q_all - q0) for q0 in range(0, q_all, qc)]
    nz = np.asarray(nonzeros, dtype=np.int64)              # N x chunks x OH [x WP]
    cols = nz if nz.ndim == 4 else None
    if cols is not None and cols.shape[3] != wpad:
        raise ValueError(f"per-column counts must cover the {wpad} padded columns, "
                         f"not {cols.shape[3]}")
    if cols is not None:
        nz = cols.sum(axis=3)
    counts = [[int(nz[b, ci, y]) for ci in range(len(chunk_q))]
              for b in range(nb) for y in range(oh)]
    groups = -(-o // a.tiles)
    v = a.pes * a.drain
    for i0, i1 in lower.blocks(counts, ow):
        rows = i1 - i0
        for ci, q in enumerate(chunk_q):
            e = sum(c[ci] for c in counts[i0:i1])
            if lower.dense == "pixels":
                raise ValueError("plan_conv: the pixel-dense mode needs the pixels' count")
            dense = lower.dense is True
            cc = None
            if cols is not None and not dense:
                cc = np.concatenate([cols[i // oh, ci, i % oh] for i in range(i0, i1)])
            cyc = predict(rows=rows, ow=ow, wp=wpad, q=q, k=kw, stride=sw, nonzeros=e,
                          dense=dense, pes=a.pes, drain=a.drain, col_counts=cc)
            if ci:                       # later sub-position chunks accumulate
                cyc += accumulate_latency(cfg.pe.combiner())
            yield ("run", groups, q, e, cyc, rows * wpad * q if dense else e)
        yield ("read", -(-rows * ow // v), groups)


# -- the twin ----------------------------------------------------------------------------------
class FeieTwin:
    """What a RUN does to the stores and its exact cycle count (`FeieEngine`)."""
    check_cycles = CHECK_CYCLES

    def __init__(self, *, cfg):
        self.cfg = cfg
        a = cfg.array
        self.tiles, self.pes, self.kmax, self.drain = a.tiles, a.pes, a.kmax, a.drain
        self.words_per = a.pes * a.drain          # outputs per result word
        self.layout = cfg.engine.entry_layout()
        self.acc_bits = cfg.pe.result_bits
        self.a_bits, self.b_bits = cfg.pe.a_bits, cfg.pe.b_bits
        self.combiner = cfg.pe.combiner()
        self.depths = {st.name: st.depth for st in cfg.geometry.stores}

    def check(self, args):
        """0 or the `Err` code the engine's argument check gives."""
        rows, ow, wp, q, k, s = (args[n] for n in ("rows", "ow", "wp", "q", "k", "stride"))
        flags = args["flags"]
        if rows == 0 or ow == 0 or wp == 0 or q == 0 or k == 0 or s == 0 or k > self.kmax \
                or s > 2 or -(-k // s) > self.pes or flags & ~(FLAG_ACCUMULATE | FLAG_DENSE) \
                or (flags & FLAG_ACCUMULATE and self.combiner is None):
            return Err.ARG
        d, v = self.depths, self.words_per
        if args["a_base"] + args["entries"] > d["a"] or args["w_base"] + q > d["w"] \
                or args["c_base"] * v + rows * ow > d["c"] * v:
            return Err.TILE
        return Err.OK

    def schedule(self, stores, args, *, trace=False):
        E = args["entries"]
        ent = self.layout.unpack(stores["a"][args["a_base"]:args["a_base"] + E, 0])
        W = stores["w"]
        return simulate(ent, lambda qi: W[(args["w_base"] + qi) % self.depths["w"]],
                        rows=args["rows"], ow=args["ow"], wp=args["wp"], q=args["q"],
                        k=args["k"], stride=args["stride"], pes=self.pes, tiles=self.tiles,
                        kmax=self.kmax, drain=self.drain,
                        dense=bool(args["flags"] & FLAG_DENSE),
                        act_bits=self.layout.act_bits, w_bits=self.b_bits, trace=trace)

    def run(self, stores, args):
        """Execute a checked RUN on ``stores``; returns its busy cycles."""
        sch = self.schedule(stores, args)
        mask = (1 << self.acc_bits) - 1
        v = self.words_per
        words = -(-len(sch.outputs) // v)
        new = np.zeros((words * v, self.tiles), dtype=np.uint64)
        new[:len(sch.outputs)] = [[x & mask for x in o] for o in sch.outputs]
        new = new.reshape(words, v * self.tiles)
        base = args["c_base"]
        C = stores["c"]
        extra = 0
        if args["flags"] & FLAG_ACCUMULATE:
            new = self.combiner.twin(C[base:base + len(new)], new)
            extra = accumulate_latency(self.combiner)
        C[base:base + len(new)] = new
        self.compute_cycles = sch.broadcasts       # COUNTERS compute: one per broadcast
        return run_cycles(sch.cycles) + extra

    def perf(self, args, *, nonzeros):
        return {"predict": predict(rows=args["rows"], ow=args["ow"], wp=args["wp"],
                                   q=args["q"], k=args["k"], stride=args["stride"],
                                   nonzeros=nonzeros, dense=bool(args["flags"] & FLAG_DENSE),
                                   pes=self.pes, drain=self.drain)}

    def bad_runs(self):
        d = self.depths
        one = {"rows": 1, "ow": 1, "wp": 1, "q": 1, "k": 1, "stride": 1, "entries": 0}
        return [({**one, "entries": d["a"] + 1}, Err.TILE) if d["a"] < 65535 else
                ({**one, "a_base": d["a"], "entries": 1}, Err.TILE),
                ({**one, "q": d["w"] + 1}, Err.TILE) if d["w"] < 65535 else
                ({**one, "w_base": d["w"]}, Err.TILE),
                ({**one, "ow": d["c"] * self.words_per + 1}, Err.TILE),
                ({**one, "rows": 0}, Err.ARG),
                ({**one, "k": self.kmax + 1}, Err.ARG),
                ({**one, "flags": 0x80}, Err.ARG)]

    def busy_run(self, need):
        """A dense RUN of ``wp`` 1-tap outputs over an empty stream (every position a zero)
        that stays busy for ``need`` cycles: (fields, cycles, preload)."""
        top = min(255, self.depths["c"] * self.words_per)
        wp = 1
        while True:
            fields = {"rows": 1, "ow": wp, "wp": wp, "q": 1, "k": 1, "stride": 1,
                      "entries": 0, "flags": FLAG_DENSE}
            sch = simulate((np.zeros(0),) * 4, lambda qi: [0] * (self.tiles * self.kmax),
                           rows=1, ow=wp, wp=wp, q=1, k=1, stride=1, pes=self.pes,
                           tiles=self.tiles, kmax=self.kmax, drain=self.drain, dense=True)
            cycles = run_cycles(sch.cycles)
            if cycles >= need:
                return fields, cycles, {}
            if wp >= top:
                return None
            wp = min(top, 2 * wp)


# -- host mapper -------------------------------------------------------------------------------
class FeieLowering:
    """Layer mapper of the FEIE engine: `Conv2d` (groups 1 or depthwise) onto RUNs, and GEMMs
    as 1x1 convolutions (``gemm``).

    Per RUN: W words ``q`` = the filter rows of sub-positions ``q`` of the chunk (``tiles``
    output channels x ``kmax`` taps per word), A = the entries of a block of output rows
    (`encode_rows`), C words ``r*ow + j`` (``tiles`` lanes). Sub-positions (input channel,
    filter row) are split into chunks that W holds; chunks after the first accumulate.
    ``dense`` (default: ``array.zero_skip`` false) sets the RUN's dense flag (ZASCAD: every
    position of the padded rows costs a cycle); ``dense="pixels"`` instead stores every pixel
    of the image, zeros included, as an entry (ZASCAD without the padding: what skipping
    saves is then exactly the zero pixels).

    On a core whose A, W and C have two banks, with a driver that allows overlap
    (`overlaps`), the same writes, RUNs and reads go through `tessera.sim.pingpong.PingPong`:
    each RUN is sent while the one before executes; results and every RUN's cycles are the
    sequential schedule's.
    """

    def __init__(self, cfg, *, dense=None):
        self.cfg = cfg
        a = cfg.array
        self.T, self.kmax = a.tiles, a.kmax
        self.dense = (not a.zero_skip) if dense is None else \
            dense if dense == "pixels" else bool(dense)
        self.d = {s.name: s.depth for s in cfg.geometry.stores}
        self.lay = cfg.engine.entry_layout()

    def plan_q(self, q_total, wp):
        d = self.d
        qc = min(q_total, d["w"], d["a"] // wp, (1 << self.lay.q_bits))
        if qc < 1:
            raise ValueError(f"a padded row of {wp} pixels does not fit scratchpad A "
                             f"(depth {d['a']})")
        if qc < q_total and self.cfg.pe.combiner() is None:
            raise ValueError("the filter does not fit scratchpad W and this core cannot "
                             "accumulate")
        return qc

    def blocks(self, counts, ow):
        """RUN blocks over the (image, output row) sequence: ``counts[i][ci]`` entries of row
        ``i`` in chunk ``ci``; a block ``(i0, i1)`` holds as many consecutive rows as A (every
        chunk), C (``rows * ow`` outputs in words of ``pes * drain``), the row field and the
        entries field take. Rows of different images share a RUN."""
        d = self.d
        v = self.cfg.array.pes * self.cfg.array.drain
        if ow > d["c"] * v:
            raise ValueError(f"an output row of {ow} does not fit scratchpad C "
                             f"(depth {d['c']} words of {v} outputs)")
        rows_cap = max(1, min(d["c"] * v // ow, 1 << self.lay.row_bits))
        cap = min(d["a"], 0xFFFF)
        n = len(counts)
        nch = len(counts[0]) if n else 0
        out, i0 = [], 0
        while i0 < n:
            tot = list(counts[i0])
            i1 = i0 + 1
            while i1 < n and i1 - i0 < rows_cap and all(
                    tot[ci] + counts[i1][ci] <= cap for ci in range(nch)):
                for ci in range(nch):
                    tot[ci] += counts[i1][ci]
                i1 += 1
            out.append((i0, i1))
            i0 = i1
        return out

    async def conv(self, drv, x, w, layer, *, progress=None, stats=None):
        """``layer`` (a `Conv2d` with groups 1) on codes ``x`` (N x C x H x W) and ``w``
        (O x C x KH x KW); returns N x O x OH x OW result codes."""
        from tessera.sim.lowering import LayerStats
        stats = stats if stats is not None else LayerStats()
        (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
        n, o, oh, ow = layer.out_shape(x.shape)
        if kw > self.kmax or sw > 2 or -(-kw // sw) > self.cfg.array.pes:
            raise ValueError(f"Conv2d: kernel width {kw} at stride {sw} needs "
                             f"{-(-kw // sw)} PEs per tile and kmax >= {kw}; this core has "
                             f"{self.cfg.array.pes} PEs and kmax {self.kmax}")
        C = x.shape[1]
        xp = np.pad(np.asarray(x, np.uint64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        wpad = xp.shape[3]
        if wpad >= (1 << self.lay.col_bits):
            raise ValueError(f"padded width {wpad} exceeds the {self.lay.col_bits}-bit column "
                             f"field")
        q_all = [(c, i) for c in range(C) for i in range(kh)]
        qc = self.plan_q(len(q_all), wpad)
        chunks = [q_all[q0:q0 + qc] for q0 in range(0, len(q_all), qc)]
        out = np.zeros((n, o, oh, ow), dtype=np.uint64)
        wcodes = np.asarray(w, dtype=np.uint64)
        T, KM = self.T, self.kmax
        v = self.cfg.array.pes * self.cfg.array.drain
        # Entries of every (image, output row) and chunk, computed once; a RUN takes a block
        # of consecutive rows, across images.
        seq = [(b, y) for b in range(n) for y in range(oh)]
        keep = None
        if self.dense == "pixels":
            keep = np.zeros(xp.shape[1:], dtype=bool)
            keep[:, ph:ph + x.shape[2], pw:pw + x.shape[3]] = True
        span = min(wpad, sw * (ow - 1) + kw)       # the columns an output reaches
        row_entries = [[encode_rows(xp[b], ys=[y], q_list=ch, kh=kh, stride_h=sh, keep=keep,
                                    span=span)
                        for ch in chunks] for b, y in seq]
        blocks = self.blocks([[len(e[0]) for e in re] for re in row_entries], ow)

        count = counter(stats, progress)

        def steps():
            """Per block of output rows and tile of output channels: (t0, tn, i0, i1, [RUN
            steps]); a step is (W words, A entries or None, RUN fields)."""
            for t0 in range(0, o, T):
                tn = min(T, o - t0)
                for i0, i1 in blocks:
                    rows = i1 - i0
                    runs = []
                    for ci, ch in enumerate(chunks):
                        words = np.zeros((len(ch), T * KM), dtype=np.uint64)
                        for qi, (c, i) in enumerate(ch):
                            for t in range(tn):
                                words[qi, t * KM:t * KM + kw] = wcodes[t0 + t, c, i, :]
                        parts = [row_entries[i][ci] for i in range(i0, i1)]
                        ent = [np.concatenate([p[f] for p in parts]) for f in range(3)]
                        rws = np.concatenate([np.full(len(p[0]), i - i0, dtype=np.int64)
                                              for i, p in zip(range(i0, i1), parts)])
                        E = len(ent[0])
                        a_words = self.lay.pack(ent[0], ent[1], ent[2], rws).reshape(-1, 1) \
                            if E else None
                        flags = (FLAG_ACCUMULATE if ci else 0) | \
                            (FLAG_DENSE if self.dense is True else 0)
                        runs.append((words, a_words, dict(
                            rows=rows, ow=ow, wp=wpad, q=len(ch), k=kw, stride=sw, entries=E,
                            a_base=0, w_base=0, c_base=0, flags=flags)))
                    yield t0, tn, i0, i1, runs

        def place(t0, tn, i0, i1, words):
            rows = i1 - i0
            res = np.asarray(words, np.uint64)
            res = res.reshape(-1, T)[:rows * ow].reshape(rows, ow, T)
            for i in range(i0, i1):
                b, y = seq[i]
                out[b, t0:t0 + tn, y] = res[i - i0, :, :tn].T

        # One after another, or ping-pong (`tessera.sim.pingpong`): the same writes, RUNs and
        # reads in the same order; ping-pong sends each RUN while the one before executes,
        # writes its W words and entries to the banks that RUN does not read, and reads a
        # block's results (all sub-position chunks accumulated) from its C bank while the
        # next block computes.
        ex = executor(self.overlaps(drv), drv, self.cfg.geometry, count)
        for t0, tn, i0, i1, runs in steps():
            for words, a_words, fields in runs:
                await ex.write("w", 0, words)
                if a_words is not None:             # a RUN without entries writes no A
                    await ex.write("a", 0, a_words)
                await ex.run(**fields)
            nw = -(-(i1 - i0) * ow // v)
            await ex.read("c", 0, nw, lambda words, blk=(t0, tn, i0, i1): place(*blk, words))
            ex.end_block()
        await ex.finish()
        return out

    def overlaps(self, drv, *, epilogue=False, resident=False):
        """Whether `conv` (and `gemm`, `run`) runs ping-pong (`tessera.sim.pingpong`): the
        driver allows it (``drv.overlap``) and the stores it writes (A and W) and the result
        store C have two banks. ``epilogue``: this engine has none (never overlaps then);
        ``resident`` changes nothing (W is written before every RUN)."""
        return not epilogue and PingPong.possible(drv, self.cfg.geometry, ("a", "w"))

    async def run(self, drv, layer, x_codes, w_codes, *, progress=None, mode=None):
        """Run a `Conv2d` (or a `Dense` layer, as a 1x1 convolution) on codes; returns
        (result codes, `LayerStats`)."""
        from tessera.sim.layers import Conv2d, Dense
        from tessera.sim.lowering import LayerStats
        stats = LayerStats()
        x = np.asarray(x_codes, dtype=np.uint64)
        if isinstance(layer, Dense):
            layer.out_shape(x.shape)
            b = np.asarray(self.cfg.pe.operand_arrays(w_codes)["codes"], dtype=np.uint64)
            out, st = await self.gemm(drv, x, b, progress=progress)
            stats.runs, stats.cycles, stats.run_cycles = st.runs, st.cycles, st.run_cycles
            stats.k_split = st.k_split
            stats.macs = layer.macs(x.shape)
            stats.gemms.append((x.shape[0], layer.out_features, layer.in_features))
            stats.ideal_cycles = stats.macs / self.cfg.engine.macs_per_cycle()
            return out, stats
        n, o, oh, ow = layer.out_shape(x.shape)
        w = np.asarray(self.cfg.pe.operand_arrays(w_codes)["codes"], dtype=np.uint64)
        if w.ndim == 2:                  # K x O matrix form
            w = w.T.reshape(layer.weight_shape)
        if layer.groups == 1:
            out = await self.conv(drv, x, w, layer, progress=progress, stats=stats)
        else:
            g, og = layer.groups, o // layer.groups
            out = np.zeros((n, o, oh, ow), dtype=np.uint64)
            sub = Conv2d(1, og, kernel=layer.kernel, stride=layer.stride,
                         padding=layer.padding)
            for gi in range(g):
                out[:, gi * og:(gi + 1) * og] = await self.conv(
                    drv, x[:, gi:gi + 1], w[gi * og:(gi + 1) * og], sub, progress=progress,
                    stats=stats)
        stats.macs = layer.macs(x.shape)
        stats.gemms += [(n * oh * ow, o // layer.groups, layer.gemm_k())] * layer.groups
        stats.ideal_cycles = stats.macs / self.cfg.engine.macs_per_cycle()
        return out, stats

    async def gemm(self, drv, a, b, *, progress=None, mode=None, epilogue=None):
        """``a @ b`` (M x K by K x N codes) as a 1x1 convolution over a 1 x M image."""
        from tessera.sim.driver import GemmStats
        from tessera.sim.layers import Conv2d
        from tessera.sim.lowering import LayerStats
        if epilogue is not None:
            raise ValueError("gemm: the feie engine has no epilogue")
        a = np.asarray(a, dtype=np.uint64)
        b = np.asarray(b, dtype=np.uint64)
        M, K = a.shape
        N = b.shape[1]
        layer = Conv2d(K, N, kernel=1)
        width = max(1, min(M, 64, self.d["a"],
                           self.d["c"] * self.cfg.array.pes * self.cfg.array.drain))
        rows = -(-M // width)
        ap = np.zeros((rows * width, K), dtype=np.uint64)
        ap[:M] = a
        x = ap.T.reshape(1, K, rows, width)
        w = b.T.reshape(N, K, 1, 1)
        st = LayerStats()
        out = await self.conv(drv, x, w, layer, progress=progress, stats=st)
        gs = GemmStats(k_split=self.plan_q(K, width))
        gs.runs, gs.cycles, gs.run_cycles = st.runs, st.cycles, list(st.run_cycles)
        return out.reshape(N, rows * width)[:, :M].T.copy(), gs

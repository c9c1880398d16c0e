"""The performance model's tree engine (`tessera.sim.perf`, docs/perf.md): dense and
run-length ternary weights, each RUN's cycles in closed form; the run-length entries counted
from the weights by a vector op (`rle_row_entries`); the ping-pong time of a layer the
mappers run on banked stores (`overlap_seconds`)."""

import numpy as np

from tessera.hdl.engine.params import accumulate_latency
from tessera.hdl.engine.params import PRODUCT_STEPS, tree_latency
from tessera.sim.perf import _blocked, _k_chunks, _neighbours, _split

__all__ = ["layer_runs", "rle_row_entries", "overlap_seconds"]

_TREE_START = PRODUCT_STEPS + 2     # tree engines: argument check, then the first read
_RLE_SCALER_EXTRA = 3               # tree RLE: scaler cycles beyond one per lane


def layer_runs(cfg, acc, proto, layer, shape, item, *, mode, epilogue, density):
    """Count ``layer``'s RUNs (input ``shape``) into ``acc`` and its host messages into
    ``proto``: dense trees from the GEMM shapes, run-length weights from the weights'
    entries (``item["w"]``, or a seeded draw at ``density``). Returns the layer's plan for
    `overlap_seconds`: None (dense), or each GEMM's n-groups and their entries."""
    from tessera.sim.lowering import GemmLowering
    gemms = GemmLowering(cfg).gemms(layer, shape)
    if cfg.array.dense:
        for m, n, k in gemms:
            _dense_runs(cfg, acc, proto, m, n, k, epilogue)
        return
    codes = _ternary_codes(cfg, layer, item, density)
    og = codes.shape[1] // len(gemms)         # one GEMM per group
    return [_rle_runs(cfg, acc, proto, m, k, codes[:, g * og:(g + 1) * og].T, epilogue)
            for g, (m, n, k) in enumerate(gemms)]


# -- dense ---------------------------------------------------------------------------------
def _dense_runs(cfg, acc, proto, m, n, k_el, epilogue):
    from tessera.sim.engines.tree import DenseMapper
    a = cfg.array
    I, O = a.inputs, a.outputs
    k_words = -(-k_el // I)
    mapper = DenseMapper(cfg)
    mr, nt, kc = mapper.plan(m, n, k_words, epilogue=epilogue)
    d = mapper.d
    tl = tree_latency(I)
    comb = cfg.pe.combiner()
    comb_lat = accumulate_latency(comb)
    epi = cfg.engine.epilogue() if epilogue else None
    epi_lat = epi.latency if epi is not None else 0
    chunks = _k_chunks(k_words, kc, epi is not None)
    nk = sum(c[3] for c in chunks)
    for ntr, ncount in _split(-(-n // O), nt):
        proto.write("s", ntr * O, ncount)
        if epi is not None:
            proto.write("p", ntr, ncount)
        block = max(mr, (d["c"] // ntr) // mr * mr)
        blocks = _split(m, block)
        nblocks = sum(c for _, c in blocks)
        for ks, acc_f, e, kcnt in chunks:
            # W is written once per block when K is split, else once for the first block
            proto.write("w", ntr * ks, ncount * kcnt * (nblocks if nk > 1 else 1))
        for mm, mcount in _blocked(m, mr, block):
            for ks, acc_f, e, kcnt in chunks:
                cnt = ncount * mcount * kcnt
                acc.run(cnt, **_dense_terms(mm * ntr, ks, O, tl, acc_f * comb_lat,
                                            e * epi_lat))
                proto.write("a", mm * ks, cnt)
                proto.run(cnt)
        for bsz, bc in blocks:
            proto.read("c" if epi is None else "r", bsz * ntr, ncount * bc)


def _dense_terms(rows, ks, O, tl, combiner, epilogue):
    """A dense RUN's cycle terms: ``rows`` = m x n_tiles rows of ``ks`` words."""
    return dict(check=_TREE_START, compute=rows * ks, bubbles=(rows - 1) * (max(ks, O) - ks),
                fill_drain=tl + O + 6, combiner=combiner, epilogue=epilogue)


# -- run-length -----------------------------------------------------------------------
def rle_row_entries(codes_t, *, lanes, z_bits):
    """Entries each row of ``codes_t`` (rows x cols ternary codes, non-zero = a weight) gets
    in the run-length stream of the host encoder (`tessera.sim.ternary.hw_encode` with
    ``min_row_entries = lanes``): its non-zeros, the zero fillers of gaps longer than the zero
    field holds and the end marker, at least ``lanes``. A vector op over the non-zero
    positions (no stream is built)."""
    nzm = np.asarray(codes_t) != 0
    rows, cols = nzm.shape
    zmax = min((1 << z_bits) - 1, cols - 1)
    last = rows * cols - 1
    pos = np.flatnonzero(nzm.reshape(-1))
    if pos.size == 0 or pos[-1] != last:
        pos = np.append(pos, last)
    prev = np.concatenate(([-1], pos[:-1]))
    fill = (pos - prev - 1) // (zmax + 1)
    landing = np.bincount(pos // cols, minlength=rows)
    if fill.any():
        rep = np.repeat(prev, fill)
        step = np.arange(rep.size) - np.repeat(np.cumsum(fill) - fill, fill) + 1
        landing = landing + np.bincount((rep + step * (zmax + 1)) // cols, minlength=rows)
    return np.maximum(landing, lanes)


def _rle_runs(cfg, acc, proto, m, k, codes_t, epilogue):
    from tessera.sim.engines.tree import RleMapper
    P, zb = cfg.array.inputs, cfg.array.z_bits
    mapper = RleMapper(cfg)
    d = mapper.d
    n = codes_t.shape[0]
    mt, kc = mapper.plan(m, n, k)
    comb = cfg.pe.combiner()
    comb_lat = accumulate_latency(comb)
    epi = cfg.engine.epilogue() if epilogue else None
    epi_lat = epi.latency if epi is not None else 0
    k0s = list(range(0, k, kc))
    limit_n = min(d["s"], d["c"] // mt, 0xFFFF, d["p"] if epi is not None else 0xFFFF)
    # Row entries over the whole chunk (cumulative), then the mapper's greedy groups: the
    # longest run of channels whose streams fit W in every chunk.
    per = np.stack([rle_row_entries(codes_t[:, k0:k0 + kc], lanes=P, z_bits=zb)
                    for k0 in k0s])
    cum = np.concatenate([np.zeros((len(k0s), 1), np.int64), np.cumsum(per, axis=1)], axis=1)
    mt_all = -(-m // P)
    groups = []
    n0 = 0
    while n0 < n:
        hi = min(n, n0 + limit_n)
        ends = [int(np.searchsorted(cum[c], cum[c, n0] + d["w"], side="right")) - 1
                for c in range(len(k0s))]
        n1 = max(n0 + 1, min(hi, *ends))
        # The group's own streams (the encoder starts each group afresh, so its first row
        # may need more fillers than in the whole matrix): from the estimate, grow or shrink
        # the group to the mapper's (`RleMapper.groups`: the most channels whose streams fit).
        ents = _group_entries(codes_t, n0, n1, k0s, kc, P, zb)
        if max(ents) <= d["w"]:
            while n1 < hi:
                more = _group_entries(codes_t, n0, n1 + 1, k0s, kc, P, zb)
                if max(more) > d["w"]:
                    break
                n1, ents = n1 + 1, more
        else:
            while n1 > n0 + 1 and max(ents) > d["w"]:
                n1 -= 1
                ents = _group_entries(codes_t, n0, n1, k0s, kc, P, zb)
        g = n1 - n0
        groups.append((g, tuple(ents)))
        proto.write("s", g)
        if epi is not None:
            proto.write("p", g)
        block = max(mt, (d["c"] // g) // mt * mt)
        blocks = _split(mt_all, block)
        nblocks = sum(c for _, c in blocks)
        for ci, k0 in enumerate(k0s):
            kk = min(kc, k - k0)
            E = ents[ci]
            proto.write("w", E, nblocks if len(k0s) > 1 else 1)
            a_f = int(ci > 0)
            e_f = int(epi is not None and k0 + kk >= k)
            for mm, mcount in _blocked(mt_all, mt, block):
                acc.run(mcount, **_rle_terms(mm, E, P, a_f * comb_lat, e_f * epi_lat))
                proto.write("a", mm * kk, mcount)
                proto.run(mcount)
        for bsz, bc in blocks:
            proto.read("c" if epi is None else "r", bsz * g, bc)
        n0 = n1
    return {"m": m, "k": k, "mt": mt, "kc": kc, "groups": groups}


def _group_entries(codes_t, n0, n1, k0s, kc, lanes, z_bits):
    """Entries of the streams of channels ``n0:n1``, one per K chunk."""
    return [int(rle_row_entries(codes_t[n0:n1, k0:k0 + kc], lanes=lanes, z_bits=z_bits).sum())
            for k0 in k0s]


def _rle_terms(mm, entries, P, combiner, epilogue):
    """A run-length RUN's cycle terms: ``mm`` m-tiles over ``entries`` entries."""
    return dict(check=_TREE_START, compute=mm * entries, bubbles=mm,
                fill_drain=P + _RLE_SCALER_EXTRA + 3, combiner=combiner, epilogue=epilogue)


def _ternary_codes(cfg, layer, item, density):
    """K x O ternary weight codes of a layer on the run-length engine (K: per group), from
    ``w`` (codes or values, a `TernaryB` or its codes) or, without weights, a seeded draw at
    ``density`` (non-zero fraction; default 2/3)."""
    from tessera.sim.layers import Dense
    w = item.get("w")
    k = layer.gemm_k()
    o = layer.out_features if isinstance(layer, Dense) else layer.out_channels
    if w is None:
        dens = item.get("density", density)
        dens = 2 / 3 if dens is None else dens
        rng = np.random.default_rng(0)
        return (rng.random((k, o)) < dens).astype(np.uint8)
    if item.get("values"):                   # a QNet's weight values
        if np.ndim(w) == 4:                  # OIHW -> K x O
            w = np.asarray(w).reshape(o, -1).T
        w = cfg.pe.encode(w, operand="b")
    codes = np.asarray(getattr(w, "codes", w))
    if codes.ndim == 4:                          # OIHW
        codes = codes.reshape(o, -1).T
    return codes


# -- ping-pong ------------------------------------------------------------------------------
class _Group:
    """One n-group of a tree mapper's GEMM, as `overlap_seconds` needs it: ``start`` (the
    seconds of its S and P writes), ``blocks`` (its row blocks as runs ``[(units, count)]``:
    rows for dense weights, m-tiles for run-length ones), ``mr`` (units per RUN), ``chunks``
    (its K chunks ``[(words per A row, W words, accumulate, epilogue, count)]``), ``w_every``
    (W is rewritten for every block: K is split), ``unit`` (result words per block unit) and
    ``cycles(mm, chunk)`` (a RUN of ``mm`` units)."""

    def __init__(self, start, blocks, mr, chunks, w_every, unit, cycles):
        self.start, self.blocks, self.mr, self.chunks = start, blocks, mr, chunks
        self.w_every, self.unit, self.cycles = w_every, unit, cycles


def _pingpong(lt, proto, result, groups, spec):
    """``(seconds, serial seconds)`` of one tree mapper `gemm` run ping-pong
    (`tessera.sim.pingpong.PingPong`): ``groups`` its n-groups as runs ``[(key, count)]`` in
    order, ``spec(key)`` a `_Group`.

    The mapper's order: per n-group its S (and P) words; per row block, per K chunk the W
    words (the first block's, or every block's when K is split), per RUN its A words and the
    RUN; per block one READ. Each RUN starts when the previous one completes or when its
    command arrives, whichever is later; between two starts the host answers the running
    RUN, asks the previous one's cycles (STATUS, every RUN but the first), reads the previous
    block after a block's first RUN started, and writes what the next RUN needs: so the time
    is ``head + sum of max(cycles_i, o_i) + tail`` (as `gemm_os_perf.overlap_seconds`), the
    sum closed form over neighbouring group, block, chunk and RUN classes (`_neighbours`)."""
    run_q, run_r = lt.q(proto.run_msg()[0]), lt.r(proto.run_msg()[1])
    status = lt.rt(proto.status_msg())

    def write(store, words):
        return lt.rt(proto.write_msg(store, words))

    def read(G, bl):
        return lt.rt(proto.read_msg(result, bl * G.unit))

    def opening(G, bl, new_group):
        """The writes before the first RUN of a block of ``bl`` units."""
        kk, ww = G.chunks[0][:2]
        t = write("a", _split(bl, G.mr)[0][0] * kk)
        if new_group or G.w_every:
            t += write("w", ww)
        return t + (G.start if new_group else 0.0)

    def block(G, bl, prev, nxt, first):
        runs = _split(bl, G.mr)
        around = _neighbours(runs)
        t = 0.0
        for ci, ch in enumerate(G.chunks):
            kk, cnt = ch[0], ch[4]
            after = G.chunks[ci + 1] if ci + 1 < len(G.chunks) else None
            # chunk positions: (block's first chunk, the chunk after, how many)
            pos = [(ci == 0, ch if cnt > 1 else after, 1)]
            if cnt > 2:
                pos.append((False, ch, cnt - 2))
            if cnt > 1:
                pos.append((False, after, 1))
            for opens, nch, pc in pos:
                for (pm, mm, nm), cm in around.items():
                    o = run_r                                 # this RUN's answer
                    lead = opens and pm is None               # the block's first RUN
                    if not (lead and first):
                        o += status                           # the previous RUN's cycles
                    if lead and prev is not None:
                        o += prev                             # the previous block's READ
                    if nm is not None:                        # the chunk's next RUN
                        o += write("a", nm * kk) + run_q
                    elif nch is not None:                     # the next chunk's first RUN
                        o += write("w", nch[1]) + write("a", runs[0][0] * nch[0]) + run_q
                    elif nxt is not None:                     # the next block's first RUN
                        o += nxt + run_q
                    t += pc * cm * max(G.cycles(mm, ch), o)
        return t

    body = 0.0
    for (pg, g, ng), cg in _neighbours(groups).items():
        G = spec(g)
        for (pb, b, nb), cb in _neighbours(G.blocks).items():
            if pb is not None:
                prev = read(G, pb)
            elif pg is not None:
                prev = read(spec(pg), spec(pg).blocks[-1][0])
            else:
                prev = None
            if nb is not None:
                nxt = opening(G, nb, False)
            elif ng is not None:
                nxt = opening(spec(ng), spec(ng).blocks[0][0], True)
            else:
                nxt = None
            body += cg * cb * block(G, b, prev, nxt, pb is None and pg is None)
    first, last = spec(groups[0][0]), spec(groups[-1][0])
    ends = opening(first, first.blocks[0][0], True) + run_q + status \
        + read(last, last.blocks[-1][0])
    return body + ends, ends


def overlap_seconds(cfg, lt, proto, layer, shape, *, mode, epilogue, plan=None):
    """Ping-pong time of ``layer`` on the tree mappers (`DenseMapper.gemm`,
    `RleMapper.gemm` with banked stores): ``(seconds, serial link seconds)``, summed over
    its GEMMs (each its own head and tail, `_pingpong`). Dense weights: n-groups, row blocks
    and K chunks in at most a few shapes each; run-length weights: the n-groups and their
    entries per K chunk that `layer_runs` counted from the weights and returned (``plan``),
    one group after another, closed form inside a group. Each
    RUN's cycles are the closed form `layer_runs` counts (RTL-exact)."""
    from tessera.sim.lowering import GemmLowering
    a = cfg.array
    comb_lat = accumulate_latency(cfg.pe.combiner())
    epi = cfg.engine.epilogue() if epilogue else None
    epi_lat = epi.latency if epi is not None else 0
    result = "r" if epi is not None else "c"

    def start(s_words, p_words):
        """A group's S and (with the epilogue) P writes."""
        t = lt.rt(proto.write_msg("s", s_words))
        return t + (lt.rt(proto.write_msg("p", p_words)) if epi is not None else 0.0)

    total = serial = 0.0
    if a.dense:
        from tessera.sim.engines.tree import DenseMapper
        I, O = a.inputs, a.outputs
        tl = tree_latency(I)
        mapper = DenseMapper(cfg)
        gemms = {}
        for gemm in GemmLowering(cfg).gemms(layer, shape):
            gemms[gemm] = gemms.get(gemm, 0) + 1
        for (m, n, k_el), times in gemms.items():
            kw = -(-k_el // I)
            mr, nt, kc = mapper.plan(m, n, kw, epilogue=epi is not None)
            kch = _k_chunks(kw, kc, epi is not None)
            specs = {}

            def spec(ntr):
                if ntr not in specs:
                    def cycles(mm, ch, ntr=ntr):
                        return sum(_dense_terms(mm * ntr, ch[0], O, tl, ch[2] * comb_lat,
                                                ch[3] * epi_lat).values()) / lt.clk
                    specs[ntr] = _Group(
                        start(ntr * O, ntr),
                        _split(m, max(mr, (mapper.d["c"] // ntr) // mr * mr)), mr,
                        [(ks, ntr * ks, af, e, c) for ks, af, e, c in kch], kc < kw, ntr,
                        cycles)
                return specs[ntr]
            t, s = _pingpong(lt, proto, result, _split(-(-n // O), nt), spec)
            total += times * t
            serial += times * s
        return total, serial
    plans = plan
    if plans is None:
        raise ValueError("overlap_seconds: run-length weights need the n-groups layer_runs "
                         "counted from the weights (plan=)")
    from tessera.sim.engines.tree import RleMapper
    P = a.inputs
    c_depth = RleMapper(cfg).d["c"]
    for plan in plans:
        m, k, mt, kc = plan["m"], plan["k"], plan["mt"], plan["kc"]
        mt_all = -(-m // P)
        k0s = range(0, k, kc)

        def spec(key):
            g, ents = key

            def cycles(mm, ch):
                return sum(_rle_terms(mm, ch[1], P, ch[2] * comb_lat,
                                      ch[3] * epi_lat).values()) / lt.clk
            chunks = [(min(kc, k - k0), e, int(ci > 0), int(epi is not None and k0 + kc >= k),
                       1) for ci, (k0, e) in enumerate(zip(k0s, ents))]
            return _Group(start(g, g), _split(mt_all, max(mt, (c_depth // g) // mt * mt)), mt,
                          chunks, len(ents) > 1, g, cycles)
        specs = {}

        def cached(key):
            if key not in specs:
                specs[key] = spec(key)
            return specs[key]
        t, s = _pingpong(lt, proto, result, [(gk, 1) for gk in plan["groups"]], cached)
        total += t
        serial += s
    return total, serial

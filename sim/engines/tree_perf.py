"""The performance model's tree engine (`tessera.sim.perf`, docs/perf.md): dense and
run-length ternary weights, each RUN's cycles in closed form; the run-length entries counted
from the weights by a vector op (`rle_row_entries`)."""

import numpy as np

from tessera.hdl.engine.params import accumulate_latency
from tessera.hdl.engine.params import PRODUCT_STEPS, tree_latency
from tessera.sim.perf import _blocked, _k_chunks, _split

__all__ = ["layer_runs", "rle_row_entries"]

_TREE_START = PRODUCT_STEPS + 2     # tree engines: argument check, then the first read
_RLE_SCALER_EXTRA = 3               # tree RLE: scaler cycles beyond one per lane


def layer_runs(cfg, acc, proto, layer, shape, item, *, mode, epilogue, density):
    """Count ``layer``'s RUNs (input ``shape``) into ``acc`` and its host messages into
    ``proto``: dense trees from the GEMM shapes, run-length weights from the weights'
    entries (``item["w"]``, or a seeded draw at ``density``)."""
    from tessera.sim.lowering import GemmLowering
    gemms = GemmLowering(cfg).gemms(layer, shape)
    if cfg.array.dense:
        for m, n, k in gemms:
            _dense_runs(cfg, acc, proto, m, n, k, epilogue)
        return
    codes = _ternary_codes(cfg, layer, item, density)
    og = codes.shape[1] // len(gemms)         # one GEMM per group
    for g, (m, n, k) in enumerate(gemms):
        _rle_runs(cfg, acc, proto, m, k, codes[:, g * og:(g + 1) * og].T, epilogue)


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
                rows = mm * ntr
                acc.run(cnt, check=_TREE_START, compute=rows * ks,
                        bubbles=(rows - 1) * (max(ks, O) - ks), fill_drain=tl + O + 6,
                        combiner=acc_f * comb_lat, epilogue=e * epi_lat)
                proto.write("a", mm * ks, cnt)
                proto.run(cnt)
        for bsz, bc in blocks:
            proto.read("c" if epi is None else "r", bsz * ntr, ncount * bc)


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
    n0 = 0
    while n0 < n:
        hi = min(n, n0 + limit_n)
        ends = [int(np.searchsorted(cum[c], cum[c, n0] + d["w"], side="right")) - 1
                for c in range(len(k0s))]
        n1 = max(n0 + 1, min(hi, *ends))
        g = n1 - n0
        # the group's own streams (the encoder starts each group afresh)
        ents = [int(rle_row_entries(codes_t[n0:n1, k0:k0 + kc], lanes=P, z_bits=zb).sum())
                for k0 in k0s]
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
                acc.run(mcount, check=_TREE_START, compute=mm * E, bubbles=mm,
                        fill_drain=P + _RLE_SCALER_EXTRA + 3, combiner=a_f * comb_lat,
                        epilogue=e_f * epi_lat)
                proto.write("a", mm * kk, mcount)
                proto.run(mcount)
        for bsz, bc in blocks:
            proto.read("c" if epi is None else "r", bsz * g, bc)
        n0 = n1


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

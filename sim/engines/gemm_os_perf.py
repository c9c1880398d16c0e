"""The performance model's systolic GEMM engine (`tessera.sim.perf`, docs/perf.md): a layer's
RUN shapes as the engine's mapper blocks them, each RUN's cycles in closed form."""

from tessera.hdl.engine.params import accumulate_latency
from tessera.hdl.engine.params import CHECK_CYCLES
from tessera.sim.perf import _k_chunks, _neighbours, _split

__all__ = ["layer_runs", "overlap_seconds"]


def layer_runs(cfg, acc, proto, layer, shape, item, *, mode, epilogue, density):
    """Count ``layer``'s RUNs (input ``shape``) into ``acc`` and its host messages into
    ``proto`` (`tessera.sim.perf`'s accumulators)."""
    from tessera.sim.lowering import GemmLowering
    for m, n, k in GemmLowering(cfg).gemms(layer, shape):
        _gemm_runs(cfg, acc, proto, m, n, k, mode, epilogue)


def _gemm_runs(cfg, acc, proto, m, n, k_el, mode, epilogue):
    from tessera.sim.engines.gemm_os import GemmMapper
    pe, g = cfg.pe, cfg.geometry
    R, C = g.rows, g.cols
    kw = pe.layout(mode).k_per_word
    k_words = -(-k_el // kw)
    mt, nt, kc = GemmMapper(cfg).plan(m, n, k_words, epilogue=epilogue)
    ii = pe.ii(mode)
    lat = pe.latency
    comb = pe.combiner()
    comb_lat = accumulate_latency(comb)
    epi = cfg.engine.epilogue() if epilogue else None
    epi_lat = epi.latency if epi is not None else 0
    chunks = _k_chunks(k_words, kc, epi is not None)
    for ms, mc in _split(-(-m // R), mt):
        for ns, nc in _split(-(-n // C), nt):
            tiles = ms * ns
            if epi is not None:
                proto.write("p", ns, mc * nc)
            for ks, a, e, kcnt in chunks:
                cnt = mc * nc * kcnt
                period = max(ks * ii, R, C)
                acc.run(cnt, check=CHECK_CYCLES + 1, compute=tiles * ks * ii,
                        bubbles=(tiles - 1) * (period - ks * ii),
                        fill_drain=lat + C + R + 4 - ii, combiner=a * comb_lat,
                        epilogue=e * epi_lat)
                proto.write("a", ms * ks, cnt)
                proto.write("b", ns * ks, cnt)
                proto.run(cnt)
            proto.read("c" if epi is None else "r", tiles * R, mc * nc)


def overlap_seconds(cfg, lt, proto, layer, shape, *, mode, epilogue, plan=None):
    """Ping-pong time of ``layer`` on the systolic GEMM mapper: ``(seconds, serial link
    seconds)`` (``plan``: unused, the GEMM shapes say everything), summed over its GEMMs (each a `GemmMapper.gemm` call: its own head and tail).

    Blocks go M-outer, N-inner in at most two shapes each way, so a block's neighbours take a
    few forms (`_neighbours` per axis, combined); within a block the K chunks are the first,
    the middle ones and the last (`_k_chunks`). Each RUN's cycles come from the engine's
    cycle model (`GemmOSTwin.model`, RTL-exact)."""
    from tessera.hdl.engine.params import FLAG_ACCUMULATE, FLAG_EPILOGUE
    from tessera.sim.engines.gemm_os import GemmMapper
    from tessera.sim.engines.model import evaluate
    from tessera.sim.lowering import GemmLowering
    pe, g = cfg.pe, cfg.geometry
    R, C = g.rows, g.cols
    kw = pe.layout(mode).k_per_word
    twin = cfg.engine.twin()
    extra = {"mode": pe.mode_code(mode)} if pe.modes else {}
    result = "r" if epilogue else "c"
    run_q, run_r = lt.q(proto.run_msg()[0]), lt.r(proto.run_msg()[1])
    status = lt.rt(proto.status_msg())
    cycles = {}

    def cyc(ms, ns, ks, acc, epi):
        key = (ms, ns, ks, acc, epi)
        if key not in cycles:
            flags = (FLAG_ACCUMULATE if acc else 0) | (FLAG_EPILOGUE if epi else 0)
            args = {"m_tiles": ms, "n_tiles": ns, "k": ks, "flags": flags, **extra}
            cycles[key] = evaluate(twin.model, twin.env(args)) / lt.clk
        return cycles[key]

    def load(blk, ks):                 # the A and B tiles of a RUN of block ``blk``
        return lt.rt(proto.write_msg("a", blk[0] * ks)) + lt.rt(proto.write_msg("b", blk[1] * ks))

    def params(blk):
        return lt.rt(proto.write_msg("p", blk[1])) if epilogue else 0.0

    def read(blk):
        return lt.rt(proto.read_msg(result, blk[0] * blk[1] * R))

    gemms = {}
    for gemm in GemmLowering(cfg).gemms(layer, shape):
        gemms[gemm] = gemms.get(gemm, 0) + 1
    total = serial = 0.0
    for (m, n, k_el), times in gemms.items():
        k_words = -(-k_el // kw)
        mt, nt, kc = GemmMapper(cfg).plan(m, n, k_words, epilogue=epilogue)
        rows, cols = _split(-(-m // R), mt), _split(-(-n // C), nt)
        chunks = _k_chunks(k_words, kc, epilogue)
        k0 = chunks[0][0]
        # K positions in a block: (words, accumulate, epilogue, first, next chunk's words or
        # None for the block's last RUN, how many)
        pos = []
        for ci, (ks, a, e, cnt) in enumerate(chunks):
            if cnt > 1:
                pos.append((ks, a, e, False, ks, cnt - 1))
            pos.append((ks, a, e, ci == 0, chunks[ci + 1][0] if ci + 1 < len(chunks) else None,
                        1))
        body = 0.0
        for (pr, r, nr), cr in _neighbours(rows).items():
            for (pc, c, nc), cc in _neighbours(cols).items():
                blk = (r, c)
                prev = (r, pc) if pc is not None else (pr, cols[-1][0]) if pr is not None \
                    else None
                nxt = (r, nc) if nc is not None else (nr, cols[0][0]) if nr is not None \
                    else None
                t = 0.0
                for ks, a, e, first, next_ks, cnt in pos:
                    o = run_r                                 # this RUN's answer (it started)
                    if not first or prev is not None:
                        o += status                           # the previous RUN's cycles
                    if first and prev is not None:
                        o += read(prev)                       # the previous block's results
                    if next_ks is not None:                   # the next RUN of this block
                        o += load(blk, next_ks) + run_q
                    elif nxt is not None:                     # the next block's first RUN
                        o += params(nxt) + load(nxt, k0) + run_q
                    t += cnt * max(cyc(r, c, ks, a, e), o)
                body += cr * cc * t
        first_blk, last_blk = (rows[0][0], cols[0][0]), (rows[-1][0], cols[-1][0])
        ends = params(first_blk) + load(first_blk, k0) + run_q + status + read(last_blk)
        total += times * (body + ends)
        serial += times * ends
    return total, serial

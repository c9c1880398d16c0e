"""The performance model's weight-stationary GEMM engine (`tessera.sim.perf`, docs/perf.md): a
layer's RUNs as `GemmWSMapper` blocks them, each RUN's cycles from the engine's cycle model
(`tessera.sim.engines.gemm_ws.cycle_model`, RTL-exact)."""

from tessera.hdl.engine.params import CHECK_CYCLES, ws_periods

__all__ = ["layer_runs", "overlap_seconds", "ws_runs"]


def ws_runs(cfg, m, n, k_el, *, mode, epilogue):
    """The mapper's blocking of one M x N x K GEMM: ``(m blocks, n blocks, K chunks)`` as
    ``[(rows, count)]``, ``[(n-tiles, count)]`` and ``[(k tiles, accumulate, epilogue,
    count)]`` (`GemmWSMapper.plan`, `balanced`, `n_blocks`, `k_chunks`)."""
    from tessera.sim.engines.gemm_ws import GemmWSMapper, balanced, k_chunks, n_blocks
    g = cfg.geometry
    R, C = g.rows, g.cols
    kw = cfg.pe.layout(mode).k_per_word
    kt_all = -(-(-(-k_el // kw)) // R)
    mb, nt_run, kc = GemmWSMapper(cfg).plan(m, n, kt_all * R, epilogue=epilogue, mode=mode)
    return (balanced(m, -(-m // mb)), n_blocks(-(-n // C), nt_run),
            k_chunks(kt_all, kc, epilogue))


def _run_cycles(cfg, mc, nt, kk, acc, epi, mode=None):
    """The RUN's cycles split into `tessera.sim.perf`'s terms (they sum to `run_cycles`)."""
    g = cfg.geometry
    R, C = g.rows, g.cols
    twin = cfg.engine.twin()
    al = twin.combiner_latency
    ii = cfg.pe.ii(mode)
    p, pg = ws_periods(mc, R, al, ii)
    passes = nt * kk
    gaps = (nt - 1) if kk > 1 and not acc else 0
    combining = bool(acc) or kk > 1
    e = cfg.engine.epilogue()
    return dict(check=CHECK_CYCLES + 1, compute=passes * mc * ii,
                bubbles=(passes - 1) * (p - mc * ii) + gaps * (pg - p),
                fill_drain=2 * R + C + twin.extra + 5 - ii,
                combiner=al if combining else 0,
                epilogue=e.latency if epi and e is not None else 0)


def layer_runs(cfg, acc, proto, layer, shape, item, *, mode, epilogue, density):
    """Count ``layer``'s RUNs (input ``shape``) into ``acc`` and its host messages into
    ``proto`` (`tessera.sim.perf`'s accumulators)."""
    from tessera.sim.lowering import GemmLowering
    R = cfg.geometry.rows
    result = "r" if epilogue else "c"
    for m, n, k in GemmLowering(cfg).gemms(layer, shape):
        ms, ns, chunks = ws_runs(cfg, m, n, k, mode=mode, epilogue=epilogue)
        for mc, cm in ms:
            for nc, cn in ns:
                if epilogue:
                    proto.write("p", nc, cm * cn)
                for kk, a, e, kcnt in chunks:
                    cnt = cm * cn * kcnt
                    acc.run(cnt, **_run_cycles(cfg, mc, nc, kk, a, e, mode))
                    proto.write("a", kk * mc, cnt)
                    proto.write("b", kk * R * nc, cnt)
                    proto.run(cnt)
                proto.read(result, mc * nc, cm * cn)


def overlap_seconds(cfg, lt, proto, layer, shape, *, mode, epilogue, plan=None):
    """Ping-pong time of ``layer`` on the weight-stationary mapper: ``(seconds, serial link
    seconds)`` summed over its GEMMs (``plan``: unused).

    The RUNs are walked in the mapper's order (blocks M-outer, N-inner, K chunks inside); RUN
    i takes ``max(its cycles, the host work overlapping it)``: its own answer, the STATUS
    after it (every RUN but the first), the previous block's results (a block's first RUN),
    and the next RUN's tiles and command (with the next block's parameters when it is that
    block's first). Before the first RUN: its parameters, tiles and command; after the last:
    its STATUS and the last block's results (the serial part)."""
    from tessera.sim.lowering import GemmLowering
    R = cfg.geometry.rows
    result = "r" if epilogue else "c"
    run_q, run_r = lt.q(proto.run_msg()[0]), lt.r(proto.run_msg()[1])
    status = lt.rt(proto.status_msg())
    cache = {}

    def cyc(mc, nc, kk, a, e):
        key = (mc, nc, kk, a, e)
        if key not in cache:
            cache[key] = sum(_run_cycles(cfg, mc, nc, kk, a, e, mode).values()) / lt.clk
        return cache[key]

    total = serial = 0.0
    for m, n, k in GemmLowering(cfg).gemms(layer, shape):
        ms, ns, chunks = ws_runs(cfg, m, n, k, mode=mode, epilogue=epilogue)
        blocks = [(mc, nc) for mc, cm in ms for _ in range(cm) for nc, cn in ns
                  for _ in range(cn)]
        steps = [(kk, a, e) for kk, a, e, kcnt in chunks for _ in range(kcnt)]

        def load(blk, kk):
            return (lt.rt(proto.write_msg("a", kk * blk[0]))
                    + lt.rt(proto.write_msg("b", kk * R * blk[1])))

        def params(blk):
            return lt.rt(proto.write_msg("p", blk[1])) if epilogue else 0.0

        def read(blk):
            return lt.rt(proto.read_msg(result, blk[0] * blk[1]))

        t = 0.0
        k0 = steps[0][0]
        for bi, blk in enumerate(blocks):
            prev = blocks[bi - 1] if bi else None
            nxt = blocks[bi + 1] if bi + 1 < len(blocks) else None
            for si, (kk, a, e) in enumerate(steps):
                o = run_r                               # this RUN's answer (it started)
                if si or prev is not None:
                    o += status                         # the previous RUN's cycles
                if si == 0 and prev is not None:
                    o += read(prev)                     # the previous block's results
                if si + 1 < len(steps):                 # the next RUN of this block
                    o += load(blk, steps[si + 1][0]) + run_q
                elif nxt is not None:                   # the next block's first RUN
                    o += params(nxt) + load(nxt, k0) + run_q
                t += max(cyc(blk[0], blk[1], kk, a, e), o)
        ends = params(blocks[0]) + load(blocks[0], k0) + run_q + status + read(blocks[-1])
        total += t + ends
        serial += ends
    return total, serial


"""The performance model's systolic GEMM engine (`tessera.sim.perf`, docs/perf.md): a layer's
RUN shapes as the engine's mapper blocks them, each RUN's cycles in closed form."""

from tessera.hdl.engine.params import accumulate_latency
from tessera.hdl.engine.params import CHECK_CYCLES
from tessera.sim.perf import _k_chunks, _split

__all__ = ["layer_runs"]


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

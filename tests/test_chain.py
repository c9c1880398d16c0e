"""On-chip chaining: a RUN's epilogue outputs go into store A (RUN ``chain``), so a stack of
dense layers on the tree engine (``inputs == outputs``) takes its input once and gives only
the last layer's outputs. RTL (Amaranth simulation) against the golden core, both against the
same layers run one at a time through the host (each layer's outputs read and written back).
"""

import asyncio
import warnings

import numpy as np
import pytest

from tessera.generators.assemble import build_core
from tessera.hdl.ctrl.protocol import Err, Op, command
from tessera.hdl.engine.params import FLAG_EPILOGUE
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.driver import TesseraDriver
from tessera.sim.engines.tree import CODE_NEG, CODE_POS, TernaryB
from tessera.sim.lowering import _Counting
from tessera.sim.pysim import run_with_driver
from helpers import derive


def chain_cfg(**memory):
    return derive("ternary", core={"counters": True},
                  array={"inputs": 4, "outputs": 4, "scales": 64},
                  memory={"a_depth": 64, "b_depth": 64, "c_depth": 64, "p_depth": 16,
                          **memory})


def layers(cfg, rng, sizes):
    """Random ternary weights and epilogue parameters for dense layers of ``sizes``."""
    epi = cfg.engine.epilogue()
    out = []
    for k, n in zip(sizes, sizes[1:]):
        codes = rng.choice(np.array([0, CODE_POS, CODE_NEG], dtype=np.uint8), (k, n))
        wp = rng.integers(100, 400, n)
        wn = rng.integers(100, 400, n)
        step = 255 / (4.5 * epi._case_std(k))
        params = epi.user_params({"scale": [step * (0.7 + 0.1 * i) for i in range(n)]},
                                 rng.integers(0, int(epi._case_std(k)), n), n)
        out.append((TernaryB(codes, wp, wn), params))
    return out


def by_host(cfg, x, ls):
    """The same layers one at a time through the golden core, outputs back through the host."""
    drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
    mapper = cfg.engine.mapper()
    for b, params in ls:
        x, _ = asyncio.run(mapper.gemm(drv, x, b, epilogue=params))
    return np.asarray(x, dtype=np.uint64)


@pytest.mark.parametrize("banks", [1, 2])
def test_chained_mlp_rtl_equals_golden_and_layer_by_layer(banks):
    cfg = chain_cfg(a_banks=banks)
    rng = np.random.default_rng(5 + banks)
    sizes = [12, 8, 8, 6]
    ls = layers(cfg, rng, sizes)
    x = rng.integers(0, 256, (5, sizes[0])).astype(np.uint64)
    want = by_host(cfg, x, ls)
    assert len(np.unique(want)) > 5               # outputs spread over the code range
    gold = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
    g_out, g_st = asyncio.run(cfg.engine.mapper().chain(gold, x, ls))
    assert np.array_equal(g_out, want)

    async def body(t):
        drv = TesseraDriver(t, cfg)
        await drv.connect()
        return await cfg.engine.mapper().chain(drv, x, ls)
    out, st = run_with_driver(build_core(cfg), body)
    assert np.array_equal(out, want)
    assert st.run_cycles == g_st.run_cycles and st.runs == len(ls)


def test_chaining_moves_fewer_bytes_and_resident_weights_go_once():
    cfg = chain_cfg()
    rng = np.random.default_rng(9)
    sizes = [16, 8, 8, 4]
    ls = layers(cfg, rng, sizes)
    x = rng.integers(0, 256, (6, sizes[0])).astype(np.uint64)
    t = _Counting(GoldenTransport(GoldenCore(cfg)))
    drv = TesseraDriver(t, cfg, resident=True)
    asyncio.run(drv.connect())
    t.sent = t.received = 0
    out1, _ = asyncio.run(cfg.engine.mapper().chain(drv, x, ls))
    first = (t.sent, t.received)
    t.sent = t.received = 0
    x2 = rng.integers(0, 256, x.shape).astype(np.uint64)
    out2, _ = asyncio.run(cfg.engine.mapper().chain(drv, x2, ls))
    again = (t.sent, t.received)
    assert np.array_equal(out2, by_host(cfg, x2, ls))
    # The second image: only its input, the RUNs, the polls and the last outputs.
    wb = {s.name: s.word_bytes for s in cfg.geometry.stores}
    runs = len(ls)
    run_bytes = 1 + command(Op.RUN).args.nbytes + cfg.engine.args().nbytes
    assert again[0] == (6 + 6 * (sizes[0] // 4) * wb["a"]) + runs * (run_bytes + 1) + 6
    assert again[1] < first[1] + 1 and again[0] < first[0] / 2
    # One layer at a time moves every intermediate activation both ways.
    th = _Counting(GoldenTransport(GoldenCore(cfg)))
    dh = TesseraDriver(th, cfg, resident=True)
    asyncio.run(dh.connect())
    mapper = cfg.engine.mapper()
    for img in (x, x2):
        th.sent = th.received = 0
        y = img
        for b, params in ls:
            y, _ = asyncio.run(mapper.gemm(dh, y, b, epilogue=params))
    assert th.sent + th.received > again[0] + again[1]


def test_chain_field_is_checked():
    cfg = chain_cfg()
    targets = [s.name for s in cfg.geometry.chain_targets]
    assert "a" in targets and "c" not in targets and "r" not in targets
    golden = GoldenCore(cfg)
    head = command(Op.RUN).args
    bad = [bytes([Op.RUN]) + head.pack(engine=cfg.engine.code, chain=c)
           + bytes(cfg.engine.args().nbytes) for c in (4, 3, 200)]   # c, s, no store
    want = [golden.feed(b) for b in bad]
    assert want == [bytes([Err.ARG])] * 3

    async def body(t):
        out = []
        for b in bad:
            await t.send(b)
            out.append(await t.recv(1))
        return out
    assert run_with_driver(build_core(cfg), body) == want


def test_host_write_to_the_chain_bank_is_refused_while_chaining():
    """While a chaining RUN executes, a WRITE into the bank its outputs go to is refused
    (BUSY, data dropped); into the bank it reads it goes through."""
    cfg = chain_cfg(a_banks=2)
    rng = np.random.default_rng(3)
    ls = layers(cfg, rng, [16, 16, 4])
    x = rng.integers(0, 256, (12, 16)).astype(np.uint64)
    mapper = cfg.engine.mapper()

    async def body(t):
        drv = TesseraDriver(t, cfg)
        await drv.connect()
        # Load everything with the golden-free mapper, then start the first (chaining) RUN by
        # hand and probe A during it.
        await mapper.chain(drv, x, ls)
        fields = dict(m=12, n_tiles=4, k=4, a_base=0, w_base=0, s_base=0, c_base=0, p_base=0,
                      flags=FLAG_EPILOGUE)
        head = command(Op.RUN).args.pack(engine=cfg.engine.code, chain=1)
        out = b""
        for cmd in (bytes([Op.RUN]) + head + cfg.engine.args().pack(**fields),
                    bytes([Op.WRITE]) + command(Op.WRITE).args.pack(spad=0, addr=64 + 3,
                                                                    count=1) + bytes(4),
                    bytes([Op.WRITE]) + command(Op.WRITE).args.pack(spad=0, addr=60,
                                                                    count=1) + bytes(4)):
            await t.send(cmd)
            out += await t.recv(1)
        busy = (await drv.status()).busy
        return out, busy
    got, busy = run_with_driver(build_core(cfg), body)
    assert busy, "the RUN ended before the probes: make it longer"
    assert got == bytes([Err.OK, Err.BUSY, Err.OK])


def test_run_network_chains_the_digits_mlp_on_a_square_tree_core():
    """`run_network` chains a ternary digits MLP (Flatten, Dense 64->64 with the on-chip
    epilogue, Dense 64->10) on a tree core with inputs == outputs: logits equal the
    independent reference and the one-layer-at-a-time run, with fewer bytes on the link."""
    from tessera.generators.infer import compile_model
    from tessera.sim import digits
    from tessera.sim.qnet import chain_layers, k_splits_of, reference_network, run_network
    cfg = derive("ternary", array={"inputs": 8, "outputs": 8, "scales": 256},
                 memory={"a_depth": 1024, "b_depth": 256, "c_depth": 1024, "p_depth": 16})
    xtr, _, xte, yte = digits.load_split()
    q, _, _ = compile_model("digits-mlp", cfg, xtr)
    x, y = xte[:100], yte[:100]
    results = {}
    for chain in (True, False):
        drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg, resident=True)
        drv.chain = chain
        assert (chain_layers(drv, q, cfg.engine.epilogue()) is not None) == chain
        with warnings.catch_warnings():           # the kind's worst-case bound warns
            warnings.simplefilter("ignore")
            r = asyncio.run(run_network(drv, q, x, batch=50))
        ref = reference_network(q, cfg.pe, x, k_splits=k_splits_of(r))
        assert np.array_equal(r.logits, ref.logits)
        results[chain] = (r, sum(s.bytes_out + s.bytes_in for rec in r.records
                                 for s in rec.stats))
    assert np.array_equal(results[True][0].logits, results[False][0].logits)
    assert (results[True][0].logits.argmax(1) == y).mean() > 0.9
    assert results[True][1] < 0.6 * results[False][1]
    assert [rec.epilogue for rec in results[True][0].records] == \
        ["host layer", "core, chained", "none"]


# -- the systolic engine: the chain writer transposes rows into A words -----------------------
def systolic_chain_cfg(**memory):
    return derive("int8-requant", core={"counters": True},
                  array={"rows": 4, "cols": 4, "chain": True},
                  memory={"a_depth": 64, "b_depth": 64, "c_depth": 64, "p_depth": 8, **memory})


def test_systolic_chain_run_rtl_equals_golden_transposed():
    """One chaining RUN by hand (3 m-tiles x 2 n-tiles): the epilogue rows land in A as the
    next layer's words (lane r = row r), at chain_base + mi*stride + ni*cols + c; A, every
    response and the cycles (the writer's last tile: cols cycles more) equal the golden core's."""
    cfg = systolic_chain_cfg()
    assert [s.name for s in cfg.geometry.chain_targets] == ["a"]
    rng = np.random.default_rng(11)
    mt, nt, k = 3, 2, 5
    a = rng.integers(0, 256, (mt * k, 4)).astype(np.uint64)
    b = rng.integers(0, 256, (nt * k, 4)).astype(np.uint64)
    epi = cfg.engine.epilogue()
    params = epi.pack_params(bias=rng.integers(-2000, 2000, nt * 4),
                             mult=np.full(nt * 4, 1 << 30), shift=np.full(nt * 4, 7))
    lpw = 4 * epi.lanes_per_channel
    fields = dict(m_tiles=mt, n_tiles=nt, k=k, a_base=0, b_base=0, c_base=0, p_base=0,
                  flags=FLAG_EPILOGUE, chain_base=20, chain_stride=11, lo=0, hi=255 - 128)
    fields = {f: v for f, v in fields.items() if f in {x.name for x in cfg.engine.args().fields}}
    golden = GoldenCore(cfg)

    async def body(t):
        drv = TesseraDriver(t, cfg)
        await drv.connect()
        await drv.write("a", 0, a)
        await drv.write("b", 0, b)
        await drv.write("p", 0, params.reshape(nt, lpw))
        cycles = await drv.run(chain=1, **fields)
        return cycles, await drv.read("a", 0, 64)
    want_drv = TesseraDriver(GoldenTransport(golden), cfg)

    async def gold():
        await want_drv.connect()
        await want_drv.write("a", 0, a)
        await want_drv.write("b", 0, b)
        await want_drv.write("p", 0, params.reshape(nt, lpw))
        cycles = await want_drv.run(chain=1, **fields)
        return cycles, await want_drv.read("a", 0, 64)
    g_cycles, g_a = asyncio.run(gold())
    cycles, got_a = run_with_driver(build_core(cfg), body)
    assert np.array_equal(got_a, g_a) and cycles == g_cycles
    # Independent of the twin's chain path: the same RUN without chain leaves the rows in R.
    plain = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)

    async def rows():
        await plain.connect()
        await plain.write("a", 0, a)
        await plain.write("b", 0, b)
        await plain.write("p", 0, params.reshape(nt, lpw))
        c = await plain.run(**fields)
        return c, await plain.read("r", 0, mt * nt * 4)
    plain_cycles, r = asyncio.run(rows())
    assert cycles == plain_cycles + 4
    r = r.reshape(mt, nt, 4, 4)                 # mi, ni, row, channel
    for mi in range(mt):
        for ni in range(nt):
            at = 20 + mi * 11 + ni * 4
            assert np.array_equal(got_a[at:at + 4], r[mi, ni].T)
    assert np.array_equal(got_a[:mt * k], a)    # the RUN's own operands untouched
    assert len(np.unique(got_a[20:])) > 4


def _int_layers(cfg, rng, sizes):
    from tessera.sim.epilogue import quantize_multiplier
    out = []
    for k, n in zip(sizes, sizes[1:]):
        w = rng.integers(-128, 128, (k, n))
        mult, shift = zip(*(quantize_multiplier(s) for s in rng.uniform(0.002, 0.01, n)))
        out.append(((w % 256).astype(np.uint64),
                    {"bias": rng.integers(-3000, 3000, n), "mult": np.array(mult),
                     "shift": np.array(shift), "zero_point": 0, "lo": -128, "hi": 127}))
    return out


def _gemm_chain_check(cfg, x, ls):
    """The dense stack ``ls`` one layer at a time through the host (golden core), then chained
    on the golden core and on the RTL: both chained outputs equal the first, the RTL's RUN
    cycles the golden core's. Returns the outputs."""
    host = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
    mapper = cfg.engine.mapper()
    y = x
    for b, params in ls:
        y, _ = asyncio.run(mapper.gemm(host, y, b, epilogue=params))
    gold = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
    g_out, g_st = asyncio.run(mapper.chain(gold, x, ls))
    assert np.array_equal(g_out, y)

    async def body(t):
        drv = TesseraDriver(t, cfg)
        await drv.connect()
        return await cfg.engine.mapper().chain(drv, x, ls)
    out, st = run_with_driver(build_core(cfg), body)
    assert np.array_equal(out, y) and st.run_cycles == g_st.run_cycles
    return y


@pytest.mark.parametrize("banks", [1, 2])
def test_systolic_chained_mlp_rtl_equals_layer_by_layer(banks):
    """Three dense layers (N padded to whole column tiles between them) chained on the 4x4
    GEMM core: RTL = golden = one layer at a time through the host (gemm with the epilogue,
    outputs written back as the next layer's A)."""
    cfg = systolic_chain_cfg(a_banks=banks, a_depth=128, b_depth=128, c_depth=128)
    rng = np.random.default_rng(21 + banks)
    sizes = [13, 10, 7, 6]
    ls = _int_layers(cfg, rng, sizes)
    x = (rng.integers(-128, 128, (9, sizes[0])) % 256).astype(np.uint64)
    y = _gemm_chain_check(cfg, x, ls)
    assert len(np.unique(y)) > 10


def test_run_network_chains_the_int8_digits_mlp():
    """The int8 digits MLP (Dense 64->64 with the on-chip requantization, Dense 64->10) on a
    GEMM core with the chain writer: logits = reference = one layer at a time, fewer bytes."""
    from tessera.generators.infer import compile_model
    from tessera.sim import digits
    from tessera.sim.qnet import chain_layers, k_splits_of, reference_network, run_network
    cfg = derive("int8-requant", array={"chain": True}, memory={"a_banks": 2})
    xtr, _, xte, yte = digits.load_split()
    q, _, _ = compile_model("digits-mlp", cfg, xtr)
    x, y = xte[:100], yte[:100]
    res = {}
    for chain in (True, False):
        drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg, resident=True)
        drv.chain = chain
        assert (chain_layers(drv, q, cfg.engine.epilogue()) is not None) == chain
        r = asyncio.run(run_network(drv, q, x, batch=50))
        assert np.array_equal(r.logits, reference_network(q, cfg.pe, x,
                                                          k_splits=k_splits_of(r)).logits)
        res[chain] = (r.logits, sum(s.bytes_out + s.bytes_in for rec in r.records
                                    for s in rec.stats))
    assert np.array_equal(res[True][0], res[False][0])
    assert (res[True][0].argmax(1) == y).mean() > 0.9
    assert res[True][1] < 0.7 * res[False][1]


def test_banked_chaining_core_lints_and_is_deterministic(tmp_path, capsys):
    """A core with two banks per store and the chain writer: verilator --lint-only is clean
    under the documented waivers and the same config gives byte-identical Verilog."""
    import json
    from tessera.generators.cli import main
    toml = tmp_path / "chain.toml"
    toml.write_text('[core]\nname = "chain_test"\n[array]\nrows = 4\ncols = 4\nchain = true\n'
                    '[pe]\nkind = "int"\n[memory]\na_depth = 64\nb_depth = 64\nc_depth = 64\n'
                    'p_depth = 8\na_banks = 2\nb_banks = 2\nc_banks = 2\np_banks = 2\n'
                    'r_banks = 2\n')
    digests = []
    for out in ("o1", "o2"):
        assert main(["generate", str(toml), "--output", str(tmp_path / out), "--lint"]) == 0
        digests.append((tmp_path / out / "chain_test.v").read_bytes())
        m = json.loads((tmp_path / out / "manifest.json").read_text())
        assert m["geometry"]["scratchpads"]["a"]["chain"] is True
        assert m["geometry"]["scratchpads"]["c"]["banks"] == 2
    assert "lint: clean" in capsys.readouterr().out
    assert digests[0] == digests[1]


@pytest.mark.parametrize("rows, cols, k", [(3, 5, 1), (5, 2, 7)])
def test_systolic_chain_non_square_and_short_k(rows, cols, k):
    """The chain writer on non-square arrays and with K shorter than the array (a tile every
    max(k, rows, cols) cycles, so the next tile's rows arrive while a tile's words go out):
    a chained dense stack on the RTL equals the golden core and one layer at a time."""
    cfg = derive("int8-requant", core={"counters": True},
                 array={"rows": rows, "cols": cols, "chain": True},
                 memory={"a_depth": 128, "b_depth": 128, "c_depth": 128, "p_depth": 16})
    rng = np.random.default_rng(rows * 10 + cols)
    sizes = [k, 2 * cols + 1, cols - 1 or 1]
    ls = _int_layers(cfg, rng, sizes)
    x = (rng.integers(-128, 128, (2 * rows + 1, sizes[0])) % 256).astype(np.uint64)
    _gemm_chain_check(cfg, x, ls)

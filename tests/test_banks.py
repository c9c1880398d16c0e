"""Ping-pong banks and the held RUN, on the RTL (Amaranth simulation) against the golden core.

A store with ``<store>_banks = 2`` is two banks: the host addresses both (bank 1 from
``depth``), a RUN names the bank of each store (RUN's ``banks`` byte); while it executes the
host writes the other operand bank and reads the other result bank. A RUN sent while another
executes is held and starts in the cycle that one completes.
"""

import numpy as np
import pytest

from tessera.generators.assemble import build_core
from tessera.generators.config import ConfigError
from tessera.hdl.ctrl.protocol import Err, Op, command
from tessera.sim.core import GoldenCore
from tessera.sim.driver import TesseraDriver
from tessera.sim.pysim import run_with_driver
from helpers import derive

D = 64
BANKED = {"a_depth": D, "b_depth": D, "c_depth": D, "a_banks": 2, "b_banks": 2, "c_banks": 2}


def banked_cfg(**memory):
    return derive("int8-4x4", memory={**BANKED, **memory})


def run_cmd(cfg, banks, **fields):
    head = command(Op.RUN).args.pack(engine=cfg.engine.code, banks=banks)
    return bytes([Op.RUN]) + head + cfg.engine.args().pack(**fields)


def region(op, spad, addr, count):
    return bytes([op]) + command(op).args.pack(spad=spad, addr=addr, count=count)


def test_config_keys_and_geometry():
    cfg = banked_cfg()
    g = cfg.geometry
    assert [(s.name, s.depth, s.banks, s.words) for s in g.stores] == \
        [("a", D, 2, 2 * D), ("b", D, 2, 2 * D), ("c", D, 2, 2 * D)]
    info = cfg.core_info()
    assert [(s.depth, s.banks, s.words) for s in info.stores] == [(D, 2, 2 * D)] * 3
    # The generic scheme names any store of the engine; the old keys keep working.
    t = derive("ternary", memory={"w_depth": 128, "s_banks": 2, "b_depth": 64})
    assert (t.geometry.store("w").depth, t.geometry.store("s").banks) == (128, 2)
    assert derive("ternary", memory={"b_depth": 64}).geometry.store("w").depth == 64
    r = derive("int8-requant", memory={"c_depth": 128, "r_banks": 2})
    assert (r.geometry.store("r").depth, r.geometry.store("r").banks) == (128, 2)
    with pytest.raises(ConfigError, match=r"^memory\.r_depth: store 'r' has a depth its "
                                          r"engine fixes \(1024 words\)"):
        derive("int8-requant", memory={"r_depth": 128})


@pytest.mark.parametrize("memory, message", [
    ({"c_banks": 3}, r"^memory\.c_banks: 3 is out of range; allowed: 1\.\.2"),
    ({"q_banks": 2}, r"^memory\.q_banks: this core has no store 'q'; allowed: .*'a', 'b', "
                     r"'c'"),
    ({"a_size": 2}, r"^memory\.a_size: unknown key; allowed: .*<store>_banks"),
    ({"a_banks": "two"}, r"^memory\.a_banks: .*allowed: integers 1\.\.2"),
])
def test_bad_memory_keys_are_refused(memory, message):
    with pytest.raises(ConfigError, match=message):
        derive("int8-4x4", memory=memory)


def test_fixed_depth_store_refuses_a_depth_key():
    with pytest.raises(ConfigError, match=r"^memory\.s_depth: store 's' has a depth its engine "
                                          r"fixes"):
        derive("ternary", memory={"s_depth": 64})


def _tile_bytes(rng, cfg, store, count):
    s = cfg.geometry.store(store)
    return rng.integers(0, 256, count * s.word_bytes, dtype=np.uint8).tobytes()


def test_overlap_hold_and_banks_against_golden():
    """RUN 1 on bank 0; while it runs the host writes bank 1 and sends RUN 2 (held, it starts
    the cycle RUN 1 completes: no idle cycle between them); while RUN 2 runs the host reads RUN
    1's results from bank 0 of C, and is refused bank 1. Every response but the refusal equals
    the golden core's."""
    cfg = banked_cfg()
    rng = np.random.default_rng(7)
    mt, nt, k = 2, 2, 28
    fields = dict(m_tiles=mt, n_tiles=nt, k=k, a_base=0, b_base=0, c_base=0, flags=0)
    words = mt * nt * cfg.rows
    a0, b0 = _tile_bytes(rng, cfg, "a", mt * k), _tile_bytes(rng, cfg, "b", nt * k)
    a1, b1 = _tile_bytes(rng, cfg, "a", mt * k), _tile_bytes(rng, cfg, "b", nt * k)
    a2 = _tile_bytes(rng, cfg, "a", mt * k)
    script = [
        ("w", region(Op.WRITE, 0, 0, mt * k) + a0),
        ("w", region(Op.WRITE, 1, 0, nt * k) + b0),
        ("w", region(Op.WRITE, 0, D, mt * k) + a1),
        ("w", region(Op.WRITE, 1, D, nt * k) + b1),
        ("counters", bytes([Op.COUNTERS])),
        ("run1", run_cmd(cfg, 0b000, **fields)),
        ("counters1", bytes([Op.COUNTERS])),
        ("run2", run_cmd(cfg, 0b111, **fields)),           # held until RUN 1 completes
        ("counters2", bytes([Op.COUNTERS])),
        ("status", bytes([Op.STATUS])),
        ("busy", region(Op.READ, 2, D, words)),            # RUN 2's bank: refused
        ("straddle", region(Op.READ, 2, D - 1, 2)),        # both banks: refused
        ("read0", region(Op.READ, 2, 0, 2)),               # RUN 1's results, during RUN 2
        ("status_after", bytes([Op.STATUS])),
        ("w2", region(Op.WRITE, 0, 0, mt * k) + a2),       # bank 0 of A during RUN 2
    ]
    golden = GoldenCore(cfg)
    want = {}
    for name, c in script:
        want[name] = golden.feed(c)
    want["read1"] = golden.feed(region(Op.READ, 2, D, words))
    want["run3"] = golden.feed(run_cmd(cfg, 0b000, **fields))
    want["read3"] = golden.feed(region(Op.READ, 2, 0, words))
    status_bytes = 11

    async def body(t):
        got = {}
        for name, c in script:
            await t.send(c)
            if name.startswith("counters"):
                got[name] = await t.recv(21)
            elif name.startswith("status"):
                got[name] = await t.recv(status_bytes)
            elif name in ("busy", "straddle"):
                got[name] = await t.recv(1)
            else:
                got[name] = await t.recv(len(want[name]))
        drv = TesseraDriver(t, cfg)
        st = await drv.wait()
        await t.send(region(Op.READ, 2, D, words))
        got["read1"] = await t.recv(len(want["read1"]))
        got["final"] = st
        await t.send(run_cmd(cfg, 0b000, **fields))
        got["run3"] = await t.recv(1)
        await drv.wait()
        await t.send(region(Op.READ, 2, 0, words))
        got["read3"] = await t.recv(len(want["read3"]))
        return got

    got = run_with_driver(build_core(cfg), body)
    for name in ("run1", "run2", "read0", "read1", "w2", "run3", "read3"):
        assert got[name] == want[name], name
    assert got["run1"] == got["run2"] == bytes([Err.OK])
    assert got["busy"] == bytes([Err.BUSY]) and got["straddle"] == bytes([Err.BUSY])
    assert got["status_after"][1] & 1, "RUN 2 ended before its results bank was read: too short"
    assert got["status_after"][2] == Err.BUSY
    assert got["read3"] != got["read1"]          # RUN 3 read the A tile written during RUN 2
    # STATUS while RUN 2 executes: busy, and RUN 1's cycles as the previous RUN's.
    st = got["status"]
    assert st[0] == Err.OK and st[1] & 1
    twin = cfg.engine.twin()
    c1 = twin.cycles(fields) if hasattr(twin, "cycles") else None
    gold_status = golden.feed(bytes([Op.STATUS]))
    prev = int.from_bytes(st[7:11], "little")
    assert prev == int.from_bytes(gold_status[7:11], "little") == golden.prev_cycles
    if c1 is not None:
        assert prev == c1
    assert got["final"].cycles == golden.cycles and got["final"].prev_cycles == prev
    # No idle cycle between RUN 1 and RUN 2: the counters taken during RUN 1 and during RUN 2
    # differ in busy causes only.
    def counts(raw):
        return [int.from_bytes(raw[1 + 4 * i:5 + 4 * i], "little") for i in range(5)]
    c_1, c_2 = counts(got["counters1"]), counts(got["counters2"])
    assert c_2[0] == c_1[0] and c_2[4] == c_1[4]
    assert sum(c_2[1:4]) - sum(c_1[1:4]) > prev // 2
    # The waiting-for-data cause counted the first two writes (no RUN executing).
    c_0 = counts(got["counters"])
    assert c_0[4] >= 2 * (mt * k + nt * k) * 4


def test_bank_bits_of_unbanked_stores_are_refused():
    cfg = banked_cfg(c_banks=1)
    golden = GoldenCore(cfg)
    fields = dict(m_tiles=1, n_tiles=1, k=1, a_base=0, b_base=0, c_base=0, flags=0)
    cmds = [run_cmd(cfg, 0b100, **fields), run_cmd(cfg, 0b1000, **fields),
            run_cmd(cfg, 0b011, **fields), bytes([Op.STATUS])]
    want = [golden.feed(c) for c in cmds]
    assert [w[0] for w in want[:3]] == [Err.ARG, Err.ARG, Err.OK]

    async def body(t):
        out = []
        for c, w in zip(cmds, want):
            await t.send(c)
            out.append(await t.recv(len(w)))
            if c[0] == Op.RUN and out[-1][0] == Err.OK:
                await t.idle(300)        # let it finish (STATUS would clear the error)
        return out
    assert run_with_driver(build_core(cfg), body) == want


def _gemm_case(cfg, m, n, k, seed, *, epilogue=None, overlap=True, golden=False):
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (m, k))
    b = rng.integers(-128, 128, (k, n))
    codes = lambda x: (x % 256).astype(np.uint64)

    async def body(t):
        drv = TesseraDriver(t, cfg, overlap=overlap)
        await drv.connect()
        out, st = await drv.gemm(codes(a), codes(b), epilogue=epilogue)
        return out, st.run_cycles
    if golden:
        import asyncio
        from tessera.sim.core import GoldenTransport
        return a, b, asyncio.run(body(GoldenTransport(GoldenCore(cfg))))
    return a, b, run_with_driver(build_core(cfg), body)


def _signed(codes, bits):
    codes = np.asarray(codes, dtype=np.int64)
    return np.where(codes >= 1 << (bits - 1), codes - (1 << bits), codes)


def test_ping_pong_gemm_on_rtl_equals_numpy_and_sequential_cycles():
    """A GEMM of several result blocks and accumulating K chunks, ping-pong on the RTL: the
    results equal numpy's product, each RUN's cycles the one-after-another schedule's on
    a core of one bank (the same RUNs), and the golden core's."""
    small = {"a_depth": 16, "b_depth": 16, "c_depth": 16}
    cfg = derive("int8-4x4", memory={**small, "a_banks": 2, "b_banks": 2, "c_banks": 2})
    seq = derive("int8-4x4", memory=small)
    m, n, k = 11, 9, 21
    assert cfg.engine.mapper().overlaps(type("D", (), {"overlap": True}))
    a, b, (out, cycles) = _gemm_case(cfg, m, n, k, 1)
    assert np.array_equal(_signed(out, 32), a @ b)
    _, _, (out_s, cycles_s) = _gemm_case(seq, m, n, k, 1)
    _, _, (out_g, cycles_g) = _gemm_case(cfg, m, n, k, 1, golden=True)
    assert np.array_equal(out, out_s) and np.array_equal(out, out_g)
    assert cycles == cycles_s == cycles_g and len(cycles) > 4


def test_ping_pong_with_the_epilogue_and_the_sequential_fallback():
    """With the epilogue (P and R banked too) the ping-pong results equal the sequential
    schedule's; a core whose A has one bank falls back to one RUN after another."""
    small = {"a_depth": 16, "b_depth": 16, "c_depth": 16, "p_depth": 4}
    banked = {f"{s}_banks": 2 for s in "abcpr"}
    cfg = derive("int8-requant", array={"rows": 4, "cols": 4}, memory={**small, **banked})
    seq = derive("int8-requant", array={"rows": 4, "cols": 4}, memory=small)
    epi = {"bias": np.arange(10) * 37 - 100, "mult": np.full(10, 1 << 30),
           "shift": np.full(10, 8), "zero_point": 3, "lo": -100, "hi": 120}
    m, n, k = 9, 10, 20
    _, _, (out, cycles) = _gemm_case(cfg, m, n, k, 2, epilogue=epi)
    _, _, (out_s, cycles_s) = _gemm_case(seq, m, n, k, 2, epilogue=epi)
    assert np.array_equal(out, out_s) and cycles == cycles_s and len(np.unique(out)) > 20
    half = derive("int8-requant", array={"rows": 4, "cols": 4},
                  memory={**small, **banked, "a_banks": 1})
    assert not half.engine.mapper().overlaps(type("D", (), {"overlap": True}), epilogue=True)

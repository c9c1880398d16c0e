"""The ternary reduce-and-scale engines (``array.kind = "tree"``): config, twins, RTL.

Tiers: the engine twins (through the golden core and the host mapper) against an independent
integer matmul of the decoded weights, exhaustively over a 4-input tree; the RTL (Amaranth
simulator) against the twins, bit for bit and cycle for cycle, on layers and on hand-made
run-length streams (short rows that make the scaler wait, PADs, malformed streams).
"""

import asyncio

import numpy as np
import pytest

from tessera.generators.assemble import build_core
from tessera.generators.config import ConfigError, config_from_dict, load_config
from tessera.hdl.ctrl.protocol import Err
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.driver import TesseraDriver, TesseraError
from tessera.sim.engines.model import evaluate
from tessera.sim.engines.tree import TernaryB
from tessera.sim.pysim import run_with_driver
from tessera.sim.ternary import hw_decode, hw_encode


def _cfg(encoding="dense", *, inputs=4, outputs=2, depth=64, act_bits=8, scale_bits=16,
         acc_bits=32, z_bits=3, scales=64, per_channel=True, name="tern"):
    array = {"kind": "tree", "encoding": encoding, "inputs": inputs, "scales": scales,
             "z_bits": z_bits}
    if encoding == "dense":
        array["outputs"] = outputs
    return config_from_dict({
        "core": {"name": name}, "array": array,
        "pe": {"kind": "ternary", "act_bits": act_bits, "scale_bits": scale_bits,
               "acc_bits": acc_bits, "per_channel": per_channel},
        "memory": {"a_depth": depth, "b_depth": depth, "c_depth": depth}})


def _independent(a, b, acc_bits):
    """Integer matmul with the weights decoded to +Wp / 0 / -Wn (int64: small test values)."""
    codes = np.asarray(b.codes)
    w = np.where(codes == 1, b.wp[None, :], np.where(codes == 3, -b.wn[None, :], 0))
    c = np.asarray(a, dtype=np.int64) @ w.astype(np.int64)
    return (c % (1 << acc_bits)).astype(np.uint64)


def _golden_gemm(cfg, a, b):
    drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)

    async def go():
        await drv.connect()
        return await drv.gemm(a, b)
    return asyncio.run(go())


def _rtl_gemm(cfg, a, b):
    async def body(t):
        drv = TesseraDriver(t, cfg)
        await drv.connect()
        return await drv.gemm(a, b)
    return run_with_driver(build_core(cfg), body)


# -- config ---------------------------------------------------------------------------------------
def test_presets_load():
    for name in ("ternary", "ternary-rle"):
        cfg = load_config(name)
        assert cfg.array.kind == "tree" and cfg.pe.kind == "ternary"
        assert [s.name for s in cfg.geometry.stores] == ["a", "w", "s", "c"]
    assert load_config("ternary").core.boards == ("icebreaker",)


@pytest.mark.parametrize("array, pe, match", [
    ({"kind": "tree", "encoding": "rle", "outputs": 4}, {"kind": "ternary"},
     r"^array\.outputs: 4 is not used by encoding 'rle'"),
    ({"kind": "tree", "inputs": 200}, {"kind": "ternary"},
     r"^array\.inputs: 200 is out of range; allowed: 1\.\.127"),
    ({"kind": "tree", "inputs": 64, "outputs": 32}, {"kind": "ternary"},
     r"^array\.inputs/outputs: 64 x 32 .* at most 1024"),
    ({"kind": "tree", "encoding": "sparse"}, {"kind": "ternary"},
     r"^array\.encoding: 'sparse' is unknown; allowed: 'dense', 'rle'"),
    ({"kind": "tree"}, {"kind": "int"},
     r"^pe\.kind: 'int' cannot run on array\.kind 'tree'; .*'ternary'"),
    ({"kind": "systolic"}, {"kind": "ternary"},
     r"^pe\.kind: 'ternary' cannot run on array\.kind 'systolic'; allowed: array\.kind 'tree'"),
    ({"kind": "tree", "inputs": 8, "outputs": 32, "scales": 16}, {"kind": "ternary"},
     r"^array\.scales: 16 cannot hold the scales of one tile \(32 output channels\); "
     r"allowed: 32\.\.32768$"),
    ({"kind": "tree"}, {"kind": "ternary", "scale_frac": 17},
     r"^pe\.scale_frac: 17 is out of range; allowed: 0\.\.16"),
])
def test_config_errors(array, pe, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict({"array": array, "pe": pe})


# -- twins against the independent reference --------------------------------------------------------
def _all_rows(bits, inputs):
    """Every activation vector of ``inputs`` codes of ``bits`` bits (one per row)."""
    v = np.arange(1 << (bits * inputs), dtype=np.int64)
    return np.stack([(v >> (bits * i)) & ((1 << bits) - 1) for i in range(inputs)], axis=1)


def _all_patterns(inputs):
    """Every ternary weight column of ``inputs`` codes (3**inputs columns)."""
    v = np.arange(3 ** inputs)
    digits = np.stack([(v // 3 ** i) % 3 for i in range(inputs)], axis=0)
    return np.array([0, 1, 3])[digits]


@pytest.mark.parametrize("encoding", ["dense", "rle"])
def test_twin_exhaustive_4_inputs_4_bits(encoding):
    """4 inputs x all 16**4 activation vectors x all 3**4 ternary patterns, per-channel
    scales, through the golden core and the mapper; against the decoded-weight matmul."""
    cfg = _cfg(encoding, inputs=4 if encoding == "dense" else 64, outputs=3, act_bits=4,
               depth=4096, scales=128)
    a = _all_rows(4, 4)
    codes = _all_patterns(4)
    rng = np.random.default_rng(4)
    b = TernaryB(codes, rng.integers(1, 1 << 16, codes.shape[1]),
                 rng.integers(1, 1 << 16, codes.shape[1]))
    out, stats = _golden_gemm(cfg, a, b)
    assert np.array_equal(out, _independent(a, b, 32))
    assert stats.runs >= 1


@pytest.mark.parametrize("encoding", ["dense", "rle"])
@pytest.mark.parametrize("seed", range(3))
def test_twin_random_layers(encoding, seed):
    """Seeded random layers with K up to 256 and beyond one RUN (accumulating RUNs), 8-bit
    activations, 16-bit scales, sparsities 0..0.9, the wrap at 32 bits."""
    rng = np.random.default_rng(seed)
    cfg = _cfg(encoding, inputs=16, outputs=4, depth=64, act_bits=8)
    m, n, k = int(rng.integers(1, 40)), int(rng.integers(1, 20)), int(rng.integers(1, 257))
    if seed == 2:
        k = 64 * 16 + 37 if encoding == "dense" else 64 * 2 + 5    # past one RUN
    sparsity = [0.0, 0.6, 0.9][seed]
    a = rng.integers(0, 256, (m, k))
    codes = rng.choice([1, 3], (k, n))
    codes[rng.random((k, n)) < sparsity] = 0
    b = TernaryB(codes, rng.integers(1, 1 << 16, n), rng.integers(1, 1 << 16, n))
    out, stats = _golden_gemm(cfg, a, b)
    assert np.array_equal(out, _independent(a, b, 32))
    if seed == 2:
        assert stats.runs > 1


def test_weights_must_be_ternary_codes():
    with pytest.raises(ValueError, match=r"code 0b10 at flat index 1; allowed"):
        TernaryB(np.array([[1, 2], [0, 3]]), [1, 1], [1, 1])


# -- RTL (Amaranth simulator) against the twins --------------------------------------------------------
@pytest.mark.parametrize("encoding, shape, seed", [
    ("dense", (5, 3, 9), 1), ("dense", (9, 7, 30), 2), ("dense", (3, 2, 300), 3),
    ("rle", (5, 3, 9), 1), ("rle", (9, 7, 30), 2), ("rle", (5, 2, 150), 3),
])
def test_rtl_layers(encoding, shape, seed):
    """Layers on the RTL: bit-exact against the decoded-weight matmul, cycles equal to the
    twin's (K = 300 / 150 splits into accumulating RUNs)."""
    cfg = _cfg(encoding, inputs=4, outputs=2, depth=64, act_bits=8, z_bits=3)
    rng = np.random.default_rng(seed)
    m, n, k = shape
    a = rng.integers(0, 256, (m, k))
    a[0] = 255
    codes = rng.choice([0, 1, 3], (k, n))
    b = TernaryB(codes, rng.integers(1, 1 << 16, n), rng.integers(1, 1 << 16, n))
    out, stats = _rtl_gemm(cfg, a, b)
    gout, gstats = _golden_gemm(cfg, a, b)
    ref = _independent(a, b, 32)
    assert np.array_equal(out, ref) and np.array_equal(gout, ref)
    assert stats.run_cycles == gstats.run_cycles
    if k > 100:
        assert stats.runs > 1


def test_dense_cycles_are_the_model():
    """The dense cycle model: (rows - 1) * max(k, outputs) + k + tree latency + outputs + 24
    (the closed form, written out here: 18 of check, 1 store read, 1 operand register, 3 of
    the scaler, 2 to write and finish), for k below and above the scaler's period."""
    for inputs, outputs in ((4, 2), (16, 4), (5, 3)):
        cfg = _cfg(inputs=inputs, outputs=outputs)
        model = cfg.engine.twin().model
        lt = max(1, (inputs - 1).bit_length())
        for m, nt, k in ((1, 1, 1), (3, 2, 1), (2, 2, 7), (4, 1, 2)):
            want = (m * nt - 1) * max(k, outputs) + k + lt + outputs + 24
            assert evaluate(model, {"m": m, "n_tiles": nt, "k": k, "accumulate": 0}) == want


async def _commands(drv, cfg, script):
    """Run a script of ("write", store, addr, words) / ("run", fields) / ("read", store, addr,
    n) steps; returns what the reads and RUNs gave (results, cycles, error codes)."""
    out = []
    await drv.connect()
    for step in script:
        if step[0] == "write":
            await drv.write(step[1], step[2], step[3])
        elif step[0] == "run":
            try:
                out.append(("cycles", await drv.run(**step[1])))
            except TesseraError as e:
                out.append(("error", e.code))
        else:
            out.append(("read", (await drv.read(step[1], step[2], step[3])).tolist()))
    return out


def _both(cfg, script):
    rtl = run_with_driver(build_core(cfg),
                          lambda t: _commands(TesseraDriver(t, cfg), cfg, script))
    gold = asyncio.run(_commands(TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg), cfg,
                                 script))
    return rtl, gold


def _entry(w2, z, z_bits=3):
    return w2 | (z << 2)


def test_rle_streams_rtl_equals_twin():
    """Hand-made streams on the RTL and the twin, results and cycles: rows shorter than the
    lanes (the scaler makes decode wait), PADs, a stream that ends early (rows never reached
    are not written), one that runs past n (those rows are dropped), zero runs longer than
    the row (the column wraps once, the activation is masked), accumulation, two m-tiles."""
    cfg = _cfg("rle", inputs=4, depth=64, z_bits=3)
    rng = np.random.default_rng(7)
    k = 5
    acts = rng.integers(0, 256, (2 * k, 4))
    scales = np.stack([rng.integers(1, 1 << 16, 8), rng.integers(1, 1 << 16, 8)], axis=1)
    wt = np.array([[1, 0, 0, 0, 3], [0, 0, 0, 0, 0], [3, 1, 0, 1, 0]])
    streams = {
        "short_rows": hw_encode(wt, 3),                          # < 4 entries per row: waits
        "padded": hw_encode(wt, 3, min_row_entries=4),
        "ends_early": np.array([_entry(1, 2), _entry(3, 1)]),    # only row 0 reached
        "past_n": hw_encode(np.vstack([wt, wt]), 3),             # 6 rows, n = 3
        "long_runs": np.array([_entry(1, 7), _entry(3, 7), _entry(1, 0), _entry(0, 7)]),
        "pads_first": np.array([_entry(2, 0), _entry(2, 0), _entry(1, 0), _entry(3, 4)]),
    }
    assert np.array_equal(hw_decode(streams["padded"], 3, k, 3), wt)
    script = [("write", "a", 0, acts), ("write", "s", 0, scales)]
    for name, st in streams.items():
        e = len(st)
        script += [("write", "c", 0, np.zeros((8, 4), dtype=np.uint64)),
                   ("write", "w", 0, np.asarray(st).reshape(-1, 1)),
                   ("run", {"m_tiles": 2, "k": k, "n": 3, "entries": e}),
                   ("read", "c", 0, 8),
                   ("run", {"m_tiles": 2, "k": k, "n": 3, "entries": e, "flags": 1}),
                   ("read", "c", 0, 8)]
    rtl, gold = _both(cfg, script)
    assert rtl == gold
    cycles = [v for kind, v in rtl if kind == "cycles"]
    assert len(cycles) == 2 * len(streams)
    # The short rows waited for the scaler: more cycles than the padded stream's steps.
    twin = cfg.engine.twin()
    args = {"m_tiles": 2, "k": k, "n": 3, "flags": 0}
    assert twin.cycles_of(streams["short_rows"], args) == cycles[0]
    assert len(streams["short_rows"]) < len(streams["padded"])


def test_rle_result_of_the_spec_example():
    """The spec's 3 x 5 example (W transposed rows [0 Wp Wp 0 Wn], [Wn 0 0 Wp 0],
    [Wp Wn 0 Wn Wn]) on the RTL: c_row = Wp * S_p - Wn * S_n, written out by hand."""
    cfg = _cfg("rle", inputs=4, depth=64, z_bits=3)
    wt = np.array([[0, 1, 1, 0, 3], [3, 0, 0, 1, 0], [1, 3, 0, 3, 3]])
    x = np.array([[1, 2, 3, 4, 5], [10, 20, 30, 40, 50], [0, 0, 0, 0, 7], [255] * 5])  # 4 rows
    wp, wn = 3, 2
    hand = [[wp * (r[1] + r[2]) - wn * r[4], wp * r[3] - wn * r[0],
             wp * r[0] - wn * (r[1] + r[3] + r[4])] for r in x.tolist()]
    st = hw_encode(wt, 3)
    script = [("write", "a", 0, x.T), ("write", "s", 0, [[wp, wn]] * 3),
              ("write", "w", 0, np.asarray(st).reshape(-1, 1)),
              ("run", {"m_tiles": 1, "k": 5, "n": 3, "entries": len(st)}),
              ("read", "c", 0, 3)]
    rtl, gold = _both(cfg, script)
    assert rtl == gold
    got = np.array(rtl[-1][1], dtype=np.int64)             # word row, lane = activation row
    got = np.where(got >= 1 << 31, got - (1 << 32), got)
    assert got.T.tolist() == hand


@pytest.mark.parametrize("encoding", ["dense", "rle"])
def test_bad_runs_refused(encoding):
    """The twin's refused RUNs, refused by the RTL with the same codes and check cycles."""
    cfg = _cfg(encoding, inputs=4, depth=64)
    twin = cfg.engine.twin()
    script = [("run", f) for f, _ in twin.bad_runs()]
    rtl, gold = _both(cfg, script)
    assert rtl == gold == [("error", code) for _, code in twin.bad_runs()]
    assert {code for _, code in twin.bad_runs()} == {Err.ARG, Err.TILE}


# -- generated Verilog and units -------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["ternary", "ternary-rle"])
def test_presets_lint_and_are_deterministic(preset, tmp_path):
    from tessera.generators.generate import generate_core
    from tessera.sim.verilator import lint
    cfg = load_config(preset)
    m1 = generate_core(cfg, tmp_path / "one")
    m2 = generate_core(cfg, tmp_path / "two")
    assert (tmp_path / "one" / m1["verilog"]).read_bytes() == \
        (tmp_path / "two" / m2["verilog"]).read_bytes()
    lint([tmp_path / "one" / m1["verilog"]], m1["top"]).check()
    assert m1["timing"]["model"] == ("tree_dense" if preset == "ternary" else "tree_rle")


@pytest.mark.parametrize("inputs", [1, 16, 64])
def test_unit_ternary_tree(inputs, tmp_path):
    from tessera.generators.units import generate_unit
    man = generate_unit("ternary_tree", {"inputs": inputs}, tmp_path / "u")
    assert man["unit"] == "ternary_tree" and man["options"]["inputs"] == inputs
    assert man["latency"] == max(1, (inputs - 1).bit_length()) + 3
    assert man["formats"]["w"]["kind"] == "ternary"
    text = (tmp_path / "u" / man["verilog"]).read_text()
    assert "module tessera_ternary_tree" in text


def test_host_flow_float_layer_to_values():
    """Float weights and activations -> TTQ codes and scale codes, k-bit activation codes ->
    the core (golden) -> result values; equal, as exact rationals, to the layer computed with
    the quantized values by hand (Fractions), on a per-layer and a per-channel core."""
    from fractions import Fraction
    from tessera.sim.ternary import TernaryFormat, quantize_act, ternarize
    rng = np.random.default_rng(3)
    w = rng.standard_normal((40, 6))
    x = rng.uniform(-0.5, 1.5, (7, 40))
    for per_channel in (False, True):
        cfg = _cfg("rle", inputs=4, depth=256, act_bits=4, scale_bits=12,
                   per_channel=per_channel, z_bits=4)
        fmt = TernaryFormat(act_bits=4, scale_bits=12, scale_frac=8, per_channel=per_channel)
        tw = ternarize(w, 0.3, per_channel=per_channel)
        wp = np.array([fmt.encode_scale(float(v)) for v in tw.wp])
        wn = np.array([fmt.encode_scale(float(v)) for v in tw.wn])
        q = np.asarray(quantize_act(x, 4), dtype=np.int64)
        out, _ = _golden_gemm(cfg, q, TernaryB(tw.codes, wp, wn))
        got = cfg.pe.result_values(out)
        for i in range(q.shape[0]):
            for j in range(w.shape[1]):
                want = sum(Fraction(int(q[i, kk])) * (Fraction(int(wp[j]), 256) if c == 1 else
                                                      -Fraction(int(wn[j]), 256))
                           for kk, c in enumerate(tw.codes[:, j]) if c)
                assert got[i, j] == want
        assert np.count_nonzero(tw.codes == 0) > 0


def test_rle_perf_counts_the_stream():
    cfg = _cfg("rle", inputs=4, depth=64, z_bits=3)
    twin = cfg.engine.twin()
    st = hw_encode(np.array([[1, 0, 0, 3, 0], [0, 0, 0, 0, 0], [3, 1, 0, 1, 0]]), 3,
                   min_row_entries=4)
    args = {"m_tiles": 3, "k": 5, "n": 3, "entries": len(st), "flags": 0}
    p = twin.perf(args, entries=st)
    assert p["ideal"] == 3 * 5 and p["predict"] == twin.cycles_of(st, args)
    # Padded rows never wait: one step per entry and one END step per m-tile, 19 cycles to
    # the first, then the last row's scaling (4 lanes + 3) and completion.
    last = 18 + 3 * (len(st) + 1)
    assert p["predict"] == max(last + 2, last + 1 + 4 + 3 + 1 + 1)

# amaranth: UnusedElaboratable=no
"""The kind registries: every registered PE kind and engine answers the contract consistently."""

import gc
import re
import warnings

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable

from tessera.generators.config import ConfigError, config_from_dict, load_config, preset_names
from tessera.generators.kinds import ENGINES, PE_KINDS
from tessera.generators.kinds.base import OperandLayout
from tessera.sim.engines.model import evaluate, to_text, variables


#: The PE kinds of the systolic array (the PE contract of `tessera.hdl.array.pe`); the
#: ``ternary`` kind runs on the tree engine and is tested in tests/test_tree_engine.py.
SYSTOLIC_KINDS = sorted(n for n, k in PE_KINDS.items() if "systolic" in k.engines)
SYSTOLIC_PRESETS = [p for p in preset_names() if load_config(p).array.kind == "systolic"
                    and load_config(p).array.dataflow == "output_stationary"]
#: The weight-stationary presets' model is tests/test_ws_engine.py's (closed form and RTL).

# PEs built only to ask their latency are never elaborated: that is the point.
NEVER_ELABORATED = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


@pytest.fixture(autouse=True)
def _collect_unelaborated():
    """Collect the components built here while their warning is expected, not in a later test."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        gc.collect()


@NEVER_ELABORATED
@pytest.mark.parametrize("name", SYSTOLIC_KINDS)
def test_kind_latency_and_ii_match_its_hdl(name):
    """The kind states latency and II without building HDL; they must equal the PE's own."""
    kind = PE_KINDS[name]()
    pe = kind.make_pe()
    assert (pe.latency, pe.ii) == (kind.latency, kind.ii())
    lay = kind.layout()
    assert pe.signature.a_shape.width == lay.a_elems * lay.a_bits
    assert pe.signature.b_shape.width == lay.b_elems * lay.b_bits
    assert pe.signature.acc_shape.width == kind.result_bits


def test_kind_latency_needs_no_amaranth():
    """Every kind answers latency and II from `tessera.hdl.arith.params` (the one home the HDL
    PEs read too) without loading Amaranth."""
    import subprocess
    import sys
    code = ("import sys\n"
            "from tessera.generators.kinds import PE_KINDS\n"
            "for k in PE_KINDS.values():\n"
            "    kind = k()\n"
            "    print(kind.name, kind.latency, *(kind.ii(m) for m in kind.modes or (None,)))\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'amaranth'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()
    assert out[-1] == "[]", out[-1]
    assert len(out) == len(PE_KINDS) + 1


def test_pe_latencies_have_one_home():
    """The HDL PEs' latencies are the functions of `tessera.hdl.arith.params` (the kinds read the
    same functions); the numbers themselves are pinned here once more."""
    from tessera.hdl.arith import params
    assert params.int_acc_latency() == params.INT_ACC_LATENCY == 2
    assert params.int_acc_latency(2) == 4
    assert [params.multiprec_ii(a, b) for a, b in ((4, 4), (8, 4), (4, 8), (8, 8))] == \
        [1, 2, 2, 4]
    assert params.multiprec_latency([1, 2, 4]) == 6
    assert params.TERNARY_SCALE_LATENCY == 3
    assert PE_KINDS["multiprec"]().latency == 6
    assert PE_KINDS["bitfusion"](stages=2).latency == 4


def test_ternary_latency_is_the_scalers():
    from tessera.hdl.arith.ternary_scale import SerialScaler
    assert PE_KINDS["ternary"]().latency == SerialScaler.LATENCY_EXTRA
    assert PE_KINDS["ternary"]().engines == ("tree",)


def test_every_engine_has_a_pe_kind_and_a_preset():
    for name in ENGINES:
        assert any(ENGINES[name].accepts(k) for k in PE_KINDS.values()), name
        assert any(load_config(p).array.kind == name for p in preset_names()), name


@NEVER_ELABORATED
@pytest.mark.parametrize("preset", SYSTOLIC_PRESETS)
def test_preset_kinds_match_their_hdl(preset):
    cfg = load_config(preset)
    pe = cfg.pe.make_pe()
    assert (pe.latency, pe.ii) == (cfg.pe.latency, cfg.pe.ii())


@pytest.mark.parametrize("name", sorted(PE_KINDS))
def test_kind_parses_only_its_own_keys(name):
    cls = PE_KINDS[name]
    allowed = ", ".join(repr(k) for k in ["kind", *cls.keys()])
    array = {"kind": cls.engines[0]}
    with pytest.raises(ConfigError, match=rf"^pe\.nosuchkey: unknown key; allowed: "
                                          rf"{re.escape(allowed)}$"):
        config_from_dict({"array": array, "pe": {"kind": name, "nosuchkey": 1}})
    assert config_from_dict({"array": array, "pe": {"kind": name}}).to_dict()["pe"] == \
        {"kind": name, **{k: getattr(cls(), k) for k in cls.keys()}}


def test_kind_codes_are_unique():
    assert len({k.code for k in PE_KINDS.values()}) == len(PE_KINDS)
    assert len({e.code for e in ENGINES.values()}) == len(ENGINES)
    assert all(k.code > 0 for k in PE_KINDS.values())


@NEVER_ELABORATED
@pytest.mark.parametrize("name", SYSTOLIC_KINDS)
def test_combiner_twin_is_consistent(name):
    """Combining with zero-result codes leaves finite results unchanged (int: exactly)."""
    kind = PE_KINDS[name]()
    comb = kind.combiner()
    assert comb is not None and comb.latency == comb.hdl().latency
    a, b = kind.operands(3, 4, 5, kind="random", rng=np.random.default_rng(1))
    res = kind.twin().tile(a.T[:, :3], b[:, :4])
    zeros = kind.twin().tile(np.zeros_like(a.T[:, :3]), b[:, :4])
    np.testing.assert_array_equal(comb.twin(zeros, res), res)


@pytest.mark.parametrize("elems, bits", [(1, 8), (2, 4), (4, 2), (8, 1), (3, 5)])
def test_operand_layout_round_trip(elems, bits):
    lay = OperandLayout(a_elems=elems, a_bits=bits, b_elems=elems, b_bits=bits)
    rng = np.random.default_rng(elems)
    codes = rng.integers(0, 1 << bits, (5, 6 * elems)).astype(np.uint64)
    lanes = lay.pack_a(codes)
    assert lanes.shape == (5, 6)
    assert int(lanes.max()) < 1 << (elems * bits)
    np.testing.assert_array_equal(lay.unpack_a(lanes), codes)
    # Element 0 sits in the least significant bits.
    np.testing.assert_array_equal(lanes & np.uint64((1 << bits) - 1), codes[:, ::elems])
    assert lay.k_per_word == elems


def test_cycle_model_expression_language():
    e = ["+", 3, ["*", "k", 2], ["max", "a", 5], ["if", "acc", 7, 0], ["-", 10, 4],
         ["//", 9, 2], ["min", 1, "a"]]
    env = {"k": 4, "a": 6, "acc": 1}
    assert evaluate(e, env) == 3 + 8 + 6 + 7 + 6 + 4 + 1
    assert evaluate(e, {**env, "acc": 0}) == 3 + 8 + 6 + 0 + 6 + 4 + 1
    assert variables(e) == ["a", "acc", "k"]
    assert "max(a, 5)" in to_text(e)
    with pytest.raises(KeyError, match="'k' is not given"):
        evaluate(e, {"a": 1, "acc": 0})
    with pytest.raises(ValueError, match="unknown cycle model operator 'pow'"):
        evaluate(["pow", 2, 3], {})


@pytest.mark.parametrize("preset", SYSTOLIC_PRESETS)
def test_cycle_model_is_the_v1_formula_for_existing_presets(preset):
    """For II 1 the model is the v1 closed form plus the registered operand read (1 cycle), plus
    on accumulating RUNs the stored-word register (1) and the combiner latency, which v1 could
    not do on FP cores. A kind with
    run-time modes gets the model's ``mode`` variable, and the II of each mode stretches the
    issue: P = max(k * ii, rows, cols) per tile, (k - 1) * ii for the last tile's pairs."""
    cfg = load_config(preset)
    t = cfg.engine.timing()
    R, C, lat = cfg.rows, cfg.cols, cfg.pe.latency
    modes = [(code, cfg.pe.ii(m)) for code, m in enumerate(cfg.pe.modes)] or [(None, 1)]
    for code, ii in modes:
        for mt, nt, k in ((1, 1, 1), (3, 2, 7), (1, 1, 300), (5, 5, 2)):
            v1 = 18 + (mt * nt - 1) * max(k * ii, R, C) + (k - 1) * ii + 2 + lat + R + C + 2
            env = {"m_tiles": mt, "n_tiles": nt, "k": k, "epilogue": 0}
            if code is not None:
                env["mode"] = code
            assert evaluate(t["run_cycles"], {**env, "accumulate": 0}) == v1
            assert evaluate(t["run_cycles"], {**env, "accumulate": 1}) == \
                v1 + t["combiner_latency"]
            comb = cfg.pe.combiner()
            assert t["combiner_latency"] == (0 if comb is None else 1 + comb.latency)


def test_memmap_store_and_geometry_checks():
    """The memory map validates what INFO can carry and finds stores by name or id."""
    from tessera.hdl.ctrl.memmap import Geometry, Store
    a = Store("a", 0, 4, 9, 32)
    c = Store("c", 1, 2, 20, 16, result=True)
    g = Geometry(rows=4, cols=2, stores=(a, c))
    assert (a.word_bits, a.word_bytes, c.word_bytes) == (36, 5, 5)
    assert g.store("c") is c and g.store(0) is a and g.pes == 8
    assert g.operand_stores == (a,) and g.result_stores == (c,)
    with pytest.raises(KeyError, match="no store 'x'"):
        g.store("x")
    with pytest.raises(ValueError, match=r"store ids must be 0\.\.1 in order, not \[1, 0\]"):
        Geometry(rows=1, cols=1, stores=(c, a))
    with pytest.raises(ValueError, match=r"lanes and lane_bits must be 1\.\.255, not 256 x 8"):
        Store("b", 0, 256, 8, 16)
    with pytest.raises(ValueError, match=r"depth must be 2\.\.65535, not 1"):
        Store("b", 0, 1, 8, 1)

"""The epilogues on the RTL (cocotb + Verilator): each epilogue family's example layer cases
(`Epilogue.example_cases`) through `run_regression` on a small core, bit-exact against the
epilogue's independent reference applied to the engine's layer reference, and cycle-exact
against the golden core. Layers only (``cases=[]``) and, for run-time-mode kinds, two modes,
so each core builds and runs in about a minute or less. The ternary kind runs on the tree
engine, dense and run-length (its epilogue: bias and the k-bit activation quantizer)."""

import pytest

from tessera.generators.config import config_from_dict
from tessera.generators.regress import run_regression


def _check_layers(s, n):
    failed = [t for t in s["tests"] if t["status"] != "passed"]
    assert not failed, failed
    assert s["ok"]
    assert len(s["layers"]) == n
    for g in s["layers"]:
        assert g["mismatches"] == 0, g
        assert g["cycles"] == g["golden_cycles"], g


MEM = {"a_depth": 64, "b_depth": 64, "c_depth": 64, "p_depth": 4}
#: name -> (config, modes to run (None: all), epilogue cases to run (None: all))
CONFIGS = {
    "int8": ({"array": {"rows": 2, "cols": 3},
              "pe": {"kind": "int", "a_bits": 8, "b_bits": 8, "acc_bits": 24}}, None, None),
    "fp8_fp16": ({"array": {"rows": 2, "cols": 2},
                  "pe": {"kind": "fpmac", "input_format": "fp8_e4m3", "acc_format": "fp16"}},
                 None, ("dense_fp_bias", "depthwise_fp_relu")),
    "biscaled": ({"array": {"rows": 2, "cols": 2}, "pe": {"kind": "biscaled"}}, None, None),
    "multiprec": ({"array": {"rows": 2, "cols": 2}, "pe": {"kind": "multiprec"}},
                  ("a8u_w8u", "a4s_w4s"), ("dense_requant", "conv3x3_requant_relu")),
    "fpec": ({"array": {"rows": 2, "cols": 2}, "pe": {"kind": "fpec", "emb_bits": 2}}, None, None),
    "ternary_dense": ({"array": {"kind": "tree", "encoding": "dense", "inputs": 4,
                                 "outputs": 2, "scales": 64},
                       "pe": {"kind": "ternary"}}, None, None),
    "ternary_rle": ({"array": {"kind": "tree", "encoding": "rle", "inputs": 4, "z_bits": 3,
                               "scales": 64},
                     "pe": {"kind": "ternary"}}, None, None),
}


#: Run under Verilator in the default suite; the others run there under Amaranth's simulator
#: (the same HDL, the whole core, no compile) and under Verilator with ``-m slow`` (keeps
#: `make test` near 15 minutes: each Verilator build costs 15-25 s).
VERILATOR_DEFAULT = ("int8",)


def _cfg_and_layers(name):
    d, modes, names = CONFIGS[name]
    cfg = config_from_dict({"core": {"name": f"epi_{name}"}, "memory": MEM, **d})
    layers = [c for c in cfg.engine.layer_cases() if c.get("epilogue") is not None
              and (modes is None or c.get("mode") in modes)
              and (names is None or c["name"].split("@")[0] in names)]
    assert layers
    return cfg, layers


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in VERILATOR_DEFAULT
                                               else pytest.mark.slow) for n in sorted(CONFIGS)])
def test_epilogue_layers_on_rtl(name, tmp_path):
    cfg, layers = _cfg_and_layers(name)
    s = run_regression(cfg, cases=[], layers=layers, test_filter="test_layer",
                       out_dir=tmp_path / "reg", progress=lambda m: None)
    _check_layers(s, len(layers))


@pytest.mark.parametrize("name", sorted(set(CONFIGS) - set(VERILATOR_DEFAULT)))
def test_epilogue_layers_on_amaranth_sim(name):
    """The same cases on the core's HDL in Amaranth's simulator: bit-exact against the
    epilogue's independent reference on the engine's layer reference, cycle-exact against
    the golden core (every RUN)."""
    import asyncio
    import numpy as np
    from tessera.generators.assemble import build_core
    from tessera.sim.core import GoldenCore, GoldenTransport
    from tessera.sim.driver import TesseraDriver
    from tessera.sim.layers import layer_from_dict
    from tessera.sim.lowering import case_bias, requant_params, run_layer
    from tessera.sim.pysim import run_with_driver
    cfg, layers = _cfg_and_layers(name)
    epi = cfg.engine.epilogue()
    for spec in layers:
        layer = layer_from_dict(spec["layer"])
        mode = spec.get("mode")
        x, w = cfg.engine.layer_operands(layer, spec["input"], seed=spec["seed"], mode=mode)
        kw = {"epilogue": spec["epilogue"], "bias": case_bias(cfg, layer, spec)}

        async def body(t):
            drv = TesseraDriver(t, cfg, poll_cycles=8)
            await drv.connect()
            return await run_layer(drv, layer, x, w, raw=True, mode=mode, **kw)
        got, st = run_with_driver(build_core(cfg), body)
        gold, gst = asyncio.run(run_layer(TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg),
                                          layer, x, w, raw=True, mode=mode, **kw))
        acc = cfg.engine.layer_reference(layer, x, w, k_split=st.k_split, mode=mode)
        params = requant_params(cfg.engine, kw["epilogue"], kw["bias"], np.shape(acc)[1],
                                mode=mode)
        want = epi.reference_codes(acc, params, mode=mode)
        assert np.array_equal(np.asarray(got, np.uint64), np.asarray(want, np.uint64)), \
            spec["name"]
        assert np.array_equal(np.asarray(gold, np.uint64), np.asarray(want, np.uint64))
        assert st.run_cycles == gst.run_cycles, spec["name"]

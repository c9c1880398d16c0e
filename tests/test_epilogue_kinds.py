"""Every PE kind's epilogue through the layer path on the golden core: the epilogue's example
layer cases (in every regression mode of run-time-mode kinds) equal the epilogue's independent
reference applied to the engine's layer reference; outputs are the next layer's operand values
(inside the RUN mode's activation range); kinds whose output format the epilogue cannot
produce refuse ``memory.p_depth``."""

import asyncio

import numpy as np
import pytest

from tessera.generators.config import config_from_dict
from tessera.generators.kinds.base import ConfigError
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.driver import TesseraDriver
from tessera.sim.layers import layer_from_dict
from tessera.sim.lowering import case_bias, layer_cases, requant_params, run_layer


def cfg_of(kind, **pe):
    return config_from_dict({"array": {"rows": 2, "cols": 3}, "pe": {"kind": kind, **pe},
                             "memory": {"a_depth": 64, "b_depth": 64, "c_depth": 64,
                                        "p_depth": 4}})


def golden_layer(cfg, layer, x, w, **kw):
    drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)

    async def go():
        await drv.connect()
        return await run_layer(drv, layer, x, w, **kw)
    return asyncio.run(go())


KINDS = [("int", {}), ("int", {"a_bits": 4, "b_bits": 4, "acc_bits": 16}),
         ("bitfusion", {}), ("multiprec", {}),
         ("fpmac", {}), ("fpmac", {"input_format": "fp8_e5m2", "acc_format": "bf16"}),
         ("fpmac", {"accumulate": "exact"}),
         ("fpmac", {"input_format": "dlfloat16", "acc_format": "dlfloat16"})]


@pytest.mark.parametrize("kind,pe", KINDS, ids=lambda v: str(v))
def test_epilogue_cases_on_golden_core(kind, pe):
    cfg = cfg_of(kind, **pe)
    epi = cfg.engine.epilogue()
    cases = [c for c in layer_cases(cfg) if "epilogue" in c]
    assert len(cases) == 3 * len(cfg.pe.regress_modes())
    seen = set()
    for case in cases:
        layer = layer_from_dict(case["layer"])
        mode = case.get("mode")
        x, w = cfg.engine.layer_operands(layer, case["input"], seed=case["seed"], mode=mode)
        kw = {"epilogue": case["epilogue"], "bias": case_bias(cfg, layer, case), "mode": mode}
        got, st = golden_layer(cfg, layer, x, w, raw=True, **kw)
        acc = cfg.engine.layer_reference(layer, x, w, k_split=st.k_split, mode=mode)
        params = requant_params(cfg.engine, case["epilogue"], kw["bias"], acc.shape[1],
                                mode=mode)
        want = epi.reference_codes(acc, params, mode=mode)
        np.testing.assert_array_equal(got, want, err_msg=case["name"])
        seen.update(np.unique(got).tolist())
        vals = epi.decode(got, mode=mode)
        if cfg.pe.modes:      # outputs are activations of the RUN's mode
            pm = cfg.pe.precision(mode)
            assert vals.min() >= pm.a_range[0] and vals.max() <= pm.a_range[1]
            cfg.pe.encode(vals, operand="a", mode=mode)
    assert len(seen) > 8          # the cases exercise more than the clamp


# fpec has an epilogue (tests/test_fpec_epilogue.py) except below 8 accumulator bits.
@pytest.mark.parametrize("kind,pe", [("fpec", {"a_int_bits": 0, "a_frac_bits": 1,
                                               "b_int_bits": 0, "b_frac_bits": 1,
                                               "acc_bits": 7})])
def test_kinds_without_epilogue_refuse_p_depth(kind, pe):
    with pytest.raises(ConfigError, match=rf"^memory\.p_depth: 4 asks for an epilogue and "
                                          rf"pe\.kind '{kind}' has none \(.+\); allowed: 0$"):
        cfg_of(kind, **pe)

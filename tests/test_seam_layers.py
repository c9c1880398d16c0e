"""The layer seam test: an engine defined entirely in this file brings its own layer support.

It reuses the systolic engine's hardware but declares that it runs only `Dense` layers, takes
every PE kind that runs on ``systolic`` (`Engine.accepts`), brings its own regression layer
cases and its own layer mapper; one registry entry (monkeypatched here) plugs it in. No shared
file knows it: the config, INFO, the driver's `run_layer` and the regression plan follow what
it declares.
"""

import asyncio
import re
from dataclasses import dataclass

import numpy as np
import pytest

from tessera.generators import kinds
from tessera.generators.config import config_from_dict
from tessera.generators.kinds.systolic import SystolicGemm, SystolicSection
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.driver import TesseraDriver
from tessera.sim.layers import Conv2d, Dense, LayerError, layer_from_dict
from tessera.sim.lowering import GemmLowering


@dataclass(frozen=True)
class MatVecSection(SystolicSection):
    name = "matvec"


class CountingLowering(GemmLowering):
    """The engine's own mapper: the shared lowering, counting the layers it maps."""
    mapped = 0

    async def run(self, drv, layer, x_codes, w_codes, **kw):
        CountingLowering.mapped += 1
        return await super().run(drv, layer, x_codes, w_codes, **kw)


class MatVecEngine(SystolicGemm):
    name = "matvec"
    code = 9
    Section = MatVecSection
    layer_types = ("Dense",)

    @classmethod
    def accepts(cls, kind):
        return "systolic" in kind.engines

    def layer_mapper(self):
        return CountingLowering(self.cfg)

    def layer_cases(self, *, quick=False):
        layer = Dense(in_features=11, out_features=5)
        return [{"name": "matvec", "layer": layer.to_dict(), "input": [1, 11],
                 "kind": "random", "seed": 5}]


@pytest.fixture
def cfg(monkeypatch):
    monkeypatch.setitem(kinds.ENGINES, "matvec", MatVecEngine)
    return config_from_dict({"array": {"kind": "matvec", "rows": 2, "cols": 3},
                             "pe": {"kind": "int", "a_bits": 8, "b_bits": 8, "acc_bits": 24}})


def _driver(cfg):
    return TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)


def test_config_and_info_follow_the_engine(cfg):
    info = cfg.core_info()
    assert (info.engine, info.engine_name) == (9, "matvec")
    assert info.layer_types == ("Dense",)
    assert cfg.engine.layer_cases()[0]["name"] == "matvec"


def test_engine_refuses_kinds_it_does_not_accept(monkeypatch):
    monkeypatch.setitem(kinds.ENGINES, "matvec", MatVecEngine)
    with pytest.raises(ValueError, match=r"^pe\.kind: 'ternary' cannot run on array\.kind "
                                         r"'matvec'; allowed: array\.kind 'tree' for this PE "
                                         r"kind, or a pe\.kind for 'matvec': 'int', "):
        config_from_dict({"array": {"kind": "matvec"}, "pe": {"kind": "ternary"}})


def test_layers_run_through_the_engines_mapper(cfg):
    drv = _driver(cfg)
    case = cfg.engine.layer_cases()[0]
    layer = layer_from_dict(case["layer"])
    x, w = cfg.engine.layer_operands(layer, case["input"], seed=case["seed"])
    before = CountingLowering.mapped
    got, stats = asyncio.run(drv.run_layer(layer, x, w, raw=True))
    assert CountingLowering.mapped == before + 1
    assert np.array_equal(got, cfg.engine.layer_reference(layer, x, w))
    assert stats.runs == 1 and stats.gemms == [(1, 5, 11)]
    # Values in, values out through the same engine.
    xv = np.arange(-5, 6).reshape(1, 11)
    wv = np.arange(55).reshape(11, 5) % 7 - 3
    y, _ = asyncio.run(drv.run_layer(layer, xv, wv))
    assert np.array_equal(y, xv @ wv)


def test_layers_the_engine_does_not_run_are_refused(cfg):
    drv = _driver(cfg)
    layer = Conv2d(1, 1, kernel=1)
    with pytest.raises(LayerError, match=re.escape("Conv2d: the matvec engine does not run it; "
                                                   "it runs Dense")):
        asyncio.run(drv.run_layer(layer, np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 1, 1))))


def test_regression_plan_takes_the_engines_cases(cfg, monkeypatch, tmp_path):
    """`run_regression` puts the engine's layer cases into the plan the testbench reads."""
    import json
    from tessera.generators import regress
    from tessera.sim import runner

    seen = {}

    def fake_run(**kw):
        seen["plan"] = json.loads(open(kw["extra_env"]["TESSERA_PLAN"]).read())
        raise RuntimeError("stop after the plan")
    monkeypatch.setattr(runner, "run_cocotb", fake_run)
    with pytest.raises(RuntimeError, match="stop after the plan"):
        regress.run_regression(cfg, out_dir=tmp_path / "r", progress=lambda m: None)
    assert [c["name"] for c in seen["plan"]["layers"]] == ["matvec"]
    assert seen["plan"]["config"]["array"]["kind"] == "matvec"

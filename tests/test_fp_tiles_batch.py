"""The float tile twins' batch path (`tiles`, every tile of a RUN in one vectorized pass) gives
exactly the codes of `tile` called once per tile."""

import numpy as np
import pytest

from tessera.sim.fparray import FPArrayModel
from tessera.sim.fpexact import FPExactArrayModel


@pytest.mark.parametrize("model", [
    FPArrayModel(input_format="fp8_e4m3", acc_format="fp16", chunk=4),
    FPArrayModel(input_format="bf16", acc_format="bf16", chunk=0),
    FPExactArrayModel(input_format="fp8_e5m2", acc_format="fp16", max_k=64),
], ids=["e4m3-chunk4", "bf16-step", "e5m2-exact"])
def test_tiles_equal_tile_by_tile(model):
    rng = np.random.default_rng(7)
    bits = 16 if "16" in str(model.fi) else 8
    mt, nt, k, rows, cols = 3, 2, 11, 4, 5
    a = rng.integers(0, 1 << bits, (mt, k, rows), dtype=np.uint64)
    b = rng.integers(0, 1 << bits, (nt, k, cols), dtype=np.uint64)
    every = model.tiles(a, b)
    assert every.shape == (mt, nt, rows, cols)
    for mi in range(mt):
        for ni in range(nt):
            np.testing.assert_array_equal(every[mi, ni], model.tile(a[mi], b[ni]))

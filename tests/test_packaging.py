"""The installed package exposes one top-level name, `tessera`, and no generic ones."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("name", ["hdl", "sim", "tb", "fpga", "generators"])
def test_no_generic_top_level_names(name, tmp_path):
    # Run outside the repository, so only what pip installed is importable.
    r = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode != 0 and "No module named" in r.stderr, r.stderr


def test_tessera_subpackages_import(tmp_path):
    code = ("import tessera.hdl.core, tessera.sim.core, tessera.generators.config, "
            "tessera.fpga.boards, tessera.tb.drivers; "
            "from tessera.generators.config import load_config; print(load_config().core.name)")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "tessera_int8_8x8"

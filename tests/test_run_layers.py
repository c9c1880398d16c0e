"""`tessera run --layers` against the golden core served over a pseudo-terminal (a stand-in for
a board's UART: the same driver, mapper and byte protocol)."""

import os
import select
import threading
import tty

import pytest

from tessera.generators.cli import main
from tessera.generators.config import load_config
from tessera.sim.core import GoldenCore

LAYERS = """
[[layer]]
name = "stem"
type = "Conv2d"
in_channels = 3
out_channels = 4
kernel = 3
stride = 2
padding = 1
input = [1, 3, 9, 9]

[[layer]]
name = "dw"
type = "Conv2d"
in_channels = 4
out_channels = 4
kernel = 3
padding = 1
groups = 4
input = [1, 4, 5, 5]

[[layer]]
name = "fc"
type = "Dense"
in_features = 40
out_features = 10
input = [2, 40]
"""


@pytest.fixture
def virtual_board():
    """A pty whose far end is a golden model of the `icebreaker` preset's core."""
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    core = GoldenCore(load_config("icebreaker"))
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            r, _, _ = select.select([master], [], [], 0.05)
            if r:
                try:
                    data = os.read(master, 4096)
                except OSError:
                    return
                reply = core.feed(data)
                if reply:
                    os.write(master, reply)
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield os.ttyname(slave)
    stop.set()
    t.join(1)
    os.close(master)
    os.close(slave)


def test_run_layers_on_a_virtual_board(virtual_board, tmp_path, capsys):
    (tmp_path / "l.toml").write_text(LAYERS)
    code = main(["run", "icebreaker", "--board", "icebreaker", "--port", virtual_board,
                 "--layers", str(tmp_path / "l.toml")])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = [ln for ln in out.splitlines() if ln.split()[:1] in (["stem"], ["dw"], ["fc"])]
    assert len(lines) == 3 and all(ln.endswith("bit-exact") for ln in lines), out
    assert "Conv2d dw 4->4 3x3/s1/p1" in out


def test_run_refuses_gemm_and_layers_together(tmp_path, capsys):
    (tmp_path / "l.toml").write_text(LAYERS)
    code = main(["run", "icebreaker", "--board", "icebreaker", "--port", "/dev/null",
                 "--gemm", "4", "4", "4", "--layers", str(tmp_path / "l.toml")])
    assert code == 2
    assert capsys.readouterr().err.strip().endswith("run: give --gemm or --layers, not both")


def test_run_refuses_a_bad_layers_file(tmp_path, capsys):
    (tmp_path / "l.toml").write_text('[[layer]]\nname = "x"\ntype = "Conv2d"\nin_channels = 3\n'
                                     'out_channels = 4\nkernel = 9\ninput = [1, 3, 9, 9]\n')
    code = main(["run", "icebreaker", "--board", "icebreaker", "--port", "/dev/null",
                 "--layers", str(tmp_path / "l.toml")])
    assert code == 2
    assert capsys.readouterr().err.strip() == ("tessera: error: --layers: Conv2d.kernel: 9 is "
                                               "out of range; allowed: 1..7")

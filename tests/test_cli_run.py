"""`tessera run` and `tessera build` through `tessera.fpga.deploy`: GEMMs, layers and networks on
the virtual boards and on a pseudo-terminal served by the framer's golden twin (a stand-in for a
programmed board: the same frames, CRCs and retransmissions as a board's serial port), and every
error of issue 23's list as one line with a non-zero exit."""

import os
import pathlib
import pty
import re
import select
import threading
import tty

import pytest

from tessera.fpga.link import SerialPipe
from tessera.fpga.top import link_sizes
from tessera.generators.cli import main
from tessera.generators.config import load_config
from tessera.sim.core import GoldenCore
from tessera.sim.framing import GoldenBoard

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
name = "fc"
type = "Dense"
in_features = 40
out_features = 10
input = [2, 40]
"""


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err, pattern):
    """``err`` is exactly one line ``tessera: error: <pattern>`` (no traceback)."""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert re.fullmatch(r"tessera: error: " + pattern, lines[0]), lines[0]
    return lines[0]


class BoardOnPty:
    """A pseudo-terminal whose far end is a `GoldenBoard` (the framer's twin in front of a
    golden core) of ``cfg`` with the iCEBreaker's link sizes: what a programmed board looks
    like on its serial port. ``damage(data) -> data`` is applied to what the board sends once
    it has answered the HELLO (after that, the link must cope or fail)."""

    def __init__(self, cfg, damage=None):
        self.master, slave = pty.openpty()
        tty.setraw(slave)
        tty.setraw(self.master)
        self.path = os.ttyname(slave)
        self._slave = slave
        self.board = GoldenBoard(GoldenCore(cfg), core_factory=lambda: GoldenCore(cfg),
                                 **link_sizes("icebreaker"))
        self.damage = damage
        self.hello_answered = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            r, _, _ = select.select([self.master], [], [], 0.02)
            if not r:
                reply = self.board.line_quiet()
            else:
                try:
                    data = os.read(self.master, 4096)
                except OSError:
                    return
                reply = self.board.exchange(data)
            if reply:
                if self.hello_answered and self.damage is not None:
                    reply = self.damage(reply)
                self.hello_answered = True
                os.write(self.master, reply)

    def close(self):
        self._stop.set()
        self._thread.join(2)
        os.close(self.master)
        os.close(self._slave)


@pytest.fixture
def board_on_pty():
    made = []

    def make(cfg, damage=None):
        made.append(BoardOnPty(cfg, damage))
        return made[-1]
    yield make
    for b in made:
        b.close()


def gemm_ms(out):
    m = re.search(r"^  ([0-9.]+) ms \(modelled line \+ RUN cycles\)", out, re.M)
    assert m, out
    return float(m.group(1))


# --- what works --------------------------------------------------------------------------------

def test_run_gemm_on_the_golden_virtual_board(capsys):
    code, out, err = run(capsys, "run", "icebreaker", "--board", "icebreaker", "--port",
                         "sim:golden", "--gemm", "24", "8", "40")
    assert code == 0 and err == "", err
    lines = out.splitlines()
    assert re.fullmatch(r"24x8x40 GEMM on icebreaker \(sim:golden\): \d+ cycles in 1 runs, "
                        r"bit-exact", lines[0]), out
    assert re.fullmatch(r"  [0-9.]+ ms \(modelled line \+ RUN cycles\): [0-9.]+ ms on the link "
                        r"\([0-9.]+ %\), \d+ payload bytes in \d+ line bytes, 0 resent",
                        lines[1]), out


def test_run_on_a_board_serial_port(capsys, board_on_pty):
    """A board on a serial port (here a pty served by the framer's twin and the golden core):
    `--port /dev/...` runs the GEMM over the framed link, timed in wall time."""
    board = board_on_pty(load_config("icebreaker"))
    code, out, err = run(capsys, "run", "icebreaker", "--board", "icebreaker", "--port",
                         board.path, "--gemm", "8", "8", "8")
    assert code == 0, err
    assert out.startswith(f"8x8x8 GEMM on icebreaker ({board.path}): ") and "bit-exact" in out
    assert "(wall time)" in out


def preset_text(name):
    """The text of a preset's TOML file."""
    import tessera.generators
    return (pathlib.Path(tessera.generators.__file__).parent / "presets" / f"{name}.toml") \
        .read_text()


def test_run_layers_on_the_golden_virtual_board(capsys, tmp_path):
    (tmp_path / "l.toml").write_text(LAYERS)
    code, out, err = run(capsys, "run", "icebreaker", "--board", "icebreaker", "--port",
                         "sim:golden", "--layers", tmp_path / "l.toml")
    assert code == 0, err
    rows = [ln for ln in out.splitlines() if ln.split()[:1] in (["stem"], ["fc"])]
    assert len(rows) == 2 and all(ln.endswith("bit-exact") for ln in rows), out
    assert re.search(r"^on icebreaker \(sim:golden\): [0-9.]+ ms \(modelled line \+ RUN "
                     r"cycles\), [0-9.]+ % on the link$", out, re.M), out


@pytest.fixture(scope="module")
def mlp_file(tmp_path_factory):
    q = tmp_path_factory.mktemp("model") / "mlp.npz"
    assert main(["infer", "digits-mlp", "icebreaker", "--images", "2", "--save", str(q)]) == 0
    return q


def test_run_model_as_a_positional_argument(capsys, mlp_file):
    """`tessera run CONFIG --board B --port P MODEL` (issue 23's form), and MODEL alone with
    the default config; `--model` (the older spelling) still works."""
    code, out, err = run(capsys, "run", "icebreaker", "--board", "icebreaker", "--port",
                         "sim:golden", mlp_file, "--images", "6")
    assert code == 0, err
    assert out.startswith("digits_mlp on tessera_icebreaker (icebreaker, sim:golden): 6 images, "
                          "accuracy "), out
    assert "6/6 equal to the reference" in out and "images/s" in out
    code, out2, err = run(capsys, "run", "icebreaker", "--board", "icebreaker", "--port",
                          "sim:golden", "--model", mlp_file, "--images", "6")
    assert code == 0 and out2.splitlines()[0] == out.splitlines()[0], err
    # MODEL alone: the default config (int8-8x8, a stream core listed for the ULX3S 85F).
    default = mlp_file.with_name("mlp_default.npz")
    assert main(["infer", "digits-mlp", "--images", "1", "--save", str(default)]) == 0
    capsys.readouterr()
    code, out, err = run(capsys, "run", "--board", "ulx3s", "--port", "sim:golden", default,
                         "--images", "4")
    assert code == 0, err
    assert out.startswith("digits_mlp on tessera_int8_8x8 (ulx3s-85f, sim:golden): 4 images")


def test_run_model_given_twice(capsys, mlp_file):
    code, _, err = run(capsys, "run", "icebreaker", mlp_file, "--board", "icebreaker",
                       "--port", "sim:golden", "--model", mlp_file)
    assert code == 2
    error_line(err, r"run: the model is given twice \('.*mlp\.npz' and --model '.*mlp\.npz'\); "
                    r"give MODEL once")


# --- issue 23's errors: one line each, non-zero exit ----------------------------------------------

def test_missing_port(capsys):
    code, out, err = run(capsys, "run", "icebreaker", "--board", "icebreaker", "--port",
                         "/dev/ttyNOPE7", "--gemm", "4", "4", "4")
    assert code == 2 and out == ""
    error_line(err, r"no serial port /dev/ttyNOPE7: is the board plugged in\? \(serial ports "
                    r"here: .*\)")


def test_busy_port(capsys):
    master, slave = pty.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    other = SerialPipe(path, 115200)          # another program has the port
    try:
        code, _, err = run(capsys, "run", "icebreaker", "--board", "icebreaker", "--port", path)
    finally:
        other.close()
        os.close(master)
        os.close(slave)
    assert code == 2
    error_line(err, rf"serial port {re.escape(path)} is busy: another program has it open .*")


def test_board_that_does_not_answer(capsys, tmp_path):
    """Nothing answers on the port: after the retries, one line names the command (HELLO), what
    was sent, and the baud rate the config asks for (host.baud 9600 here)."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    (tmp_path / "u.toml").write_text(preset_text("icebreaker").replace("baud = 3000000",
                                                                          "baud = 9600"))
    try:
        code, _, err = run(capsys, "run", tmp_path / "u.toml", "--board", "icebreaker",
                           "--port", path)
    finally:
        os.close(master)
        os.close(slave)
    assert code == 2
    error_line(err, rf"HELLO: no answer to HELLO from {re.escape(path)} within [0-9.]+ s each "
                    rf"\(sent 8 bytes: a5 48 [0-9a-f ]+\); is the board programmed with a "
                    rf"tessera bitstream \(baud 9600, board icebreaker\)\?")


def test_persistent_crc_error(capsys, board_on_pty):
    """Every frame the board sends after the HELLO arrives with a flipped bit: the host NAKs
    and the board resends, up to the retry limit; then one line names the command and why."""
    def flip(data):
        return data[:-1] + bytes([data[-1] ^ 0x10])
    board = board_on_pty(load_config("icebreaker"), damage=flip)
    code, out, err = run(capsys, "run", "icebreaker", "--board", "icebreaker", "--port",
                         board.path)
    assert code == 2 and out == ""
    error_line(err, rf"INFO: the link to {re.escape(board.path)} kept failing: 8 retries in a "
                    rf"row, frames refused: .*CRC error.*; check the cable, the baud rate and "
                    rf"the board's clock \(baud 3000000, board icebreaker\)")


def test_model_that_does_not_fit_the_core(capsys, mlp_file):
    code, out, err = run(capsys, "run", "ternary", "--board", "icebreaker", "--port",
                         "sim:golden", mlp_file)
    assert code == 2 and out == ""
    error_line(err, r"model 'digits_mlp' does not fit the core tessera_ternary: network "
                    r"'digits_mlp' was quantized for another PE: .*")


def test_core_that_does_not_fit_the_board(capsys):
    code, _, err = run(capsys, "run", "ulx3s", "--board", "icebreaker", "--port", "sim:golden")
    assert code == 2
    error_line(err, r"run: tessera_ulx3s cannot fit the icebreaker: it needs at least 144 "
                    r"SB_MAC16 DSPs and the iCE40UP5K has 8 .*")


def test_unknown_virtual_board(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "icebreaker", "--board", "icebreaker", "--port", "sim:icarus"])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "tessera run: error: argument --port: 'sim:icarus' is not a virtual board; allowed: "
        "sim:golden, sim:verilator")


# --- build: any config that fits the board -------------------------------------------------------

def test_build_takes_any_host_interface_and_the_core_clock(capsys, tmp_path, monkeypatch):
    """`tessera build --board B` builds a `stream` core (the default preset, listed for the
    ULX3S 85F) like a `uart` one, and passes host.baud and core.clock_mhz to the board top:
    here the board top's real build plan is made (no tools run) and holds the PLL for a
    24 MHz iCEBreaker core."""
    from tessera.fpga import build as fpga_build
    plans = []

    def plan_only(core, *, board, out_dir, name, seed, baud, clk_hz, progress):
        plan, _, _ = fpga_build.build_plan(core, board=board, name=name, seed=seed, baud=baud,
                                           clk_hz=clk_hz)
        plans.append((board, baud, clk_hz, plan))
        raise fpga_build.BuildError("stopped before synthesis (test)")
    monkeypatch.setattr(fpga_build, "build_bitstream", plan_only)
    monkeypatch.setattr("tessera.fpga.toolchain.require_tools", lambda tools: None)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "build", "--board", "ulx3s")
    assert code == 2, err
    error_line(err, r"stopped before synthesis \(test\)")
    board, baud, clk_hz, plan = plans[-1]
    assert (board, baud, clk_hz) == ("ulx3s-85f", 1200000, 25e6)
    assert "FramedLink" in plan.files["tessera_int8_8x8.il"] or \
        "\\link" in plan.files["tessera_int8_8x8.il"]
    (tmp_path / "fast.toml").write_text(preset_text("icebreaker").replace(
        "clock_mhz = 12.0", "clock_mhz = 24.0"))
    code, _, err = run(capsys, "build", tmp_path / "fast.toml", "--board", "icebreaker")
    assert code == 2
    board, baud, clk_hz, plan = plans[-1]
    assert (board, baud, clk_hz) == ("icebreaker", 3000000, 24e6)
    assert "cell \\SB_PLL40_PAD \\pll" in plan.files["tessera_icebreaker.il"]
    assert not (tmp_path / "build").exists() or not any((tmp_path / "build").rglob("*.bin"))


def test_build_refuses_a_clock_the_board_cannot_make(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "odd.toml").write_text(preset_text("icebreaker").replace(
        "clock_mhz = 12.0", "clock_mhz = 14.0"))
    code, _, err = run(capsys, "build", "odd.toml", "--board", "icebreaker")
    assert code == 2
    error_line(err, r"core\.clock_mhz: 14 MHz cannot be made by the icebreaker's PLL .*")
    assert list(tmp_path.iterdir()) == [tmp_path / "odd.toml"]


def test_images_without_a_model(capsys):
    code, _, err = run(capsys, "run", "icebreaker", "--board", "icebreaker", "--port",
                       "sim:golden", "--images", "5")
    assert code == 2
    error_line(err, r"run: --images chooses the images of a MODEL, and none is given; allowed: "
                    r"`tessera run \[CONFIG\] --board B --port P MODEL\.npz --images \.\.\.`")

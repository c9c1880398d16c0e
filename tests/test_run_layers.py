"""`tessera run --layers` on the golden virtual board (`--port sim:golden`: the board top's
framed link twin in front of the golden core, behind a pseudo-terminal; the same driver,
mapper and frames as a board's UART)."""

from tessera.generators.cli import main

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


def test_run_layers_on_a_virtual_board(tmp_path, capsys):
    """The layers over the framed link to the golden virtual board (the board top's framer
    twin in front of the golden core, behind a pseudo-terminal)."""
    (tmp_path / "l.toml").write_text(LAYERS)
    code = main(["run", "icebreaker", "--board", "icebreaker", "--port", "sim:golden",
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

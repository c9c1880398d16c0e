"""`tessera infer`: the command as a user types it (golden and Verilator), its JSON, the
quantized-network file it saves, and its one-line errors."""

import json

import numpy as np
import pytest

from tessera.generators.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_infer_json_golden_and_saved_network(capsys, tmp_path):
    q = tmp_path / "mlp.npz"
    code, out, err = run(capsys, "infer", "digits-mlp", "int8-requant", "--images", "40",
                         "--save", str(q), "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["images"] == 40 and r["equal_to_reference"] == 40
    assert r["accuracy"] >= 0.9 and r["float_accuracy"] is not None
    assert [x["where"] for x in r["layers"]] == ["host", "core", "core"]
    assert r["layers"][1]["epilogue"] == "core" and r["layers"][2]["epilogue"] == "none"
    assert r["cycles_per_image"] >= r["ideal_cycles_per_image"] > 0
    assert "[infer] images 40/40" in err
    # the saved network runs without the float model, with the same outputs
    code, out2, err = run(capsys, "infer", str(q), "int8-requant", "--images", "40", "--json")
    assert code == 0, err
    r2 = json.loads(out2)
    assert r2["classes"] == r["classes"] and r2["float_accuracy"] is None
    # and is refused by a core of another kind, in one line
    code, _, err = run(capsys, "infer", str(q), "fp8", "--images", "4")
    assert code == 2
    assert err.strip().splitlines()[-1].startswith(
        "tessera: error: network 'digits_mlp' was quantized for another PE: pe.kind: network "
        "'int', core 'fpmac'")


# Slow (a Verilator build): `tessera infer` runs on the golden core in the default suite
# (test_infer_json_golden_and_saved_network); `make demo` runs the RTL path.
@pytest.mark.slow
def test_infer_table_on_verilator(capsys):
    """The CNN on the int8-4x4 RTL (host epilogue): the table, every image equal to the
    reference."""
    code, out, err = run(capsys, "infer", "digits-cnn", "int8-4x4", "--sim", "verilator",
                         "--images", "20", "--batch", "10")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("digits_cnn on tessera_int8_4x4 (4x4 int, systolic engine, "
                               "verilator): 20 images, batch 10")
    assert any("Conv2d 8->16 3x3/s1/p0" in ln and "host" in ln for ln in lines)
    assert "outputs equal to the independent reference on 20/20 images" in out
    assert "M simulated cycles/s" in out


@pytest.mark.parametrize("argv,msg", [
    (["infer", "nosuch.onnx"], "MODEL: 'nosuch.onnx' is not a file; allowed: an .onnx or .npz "
                               "file, or digits-mlp, digits-cnn"),
    (["infer", "digits-mlp", "--data", "x.csv"], "--data: 'x.csv' is not 'digits' or an .npz "
                                                 "file"),
    (["infer", "digits-mlp", "bitfusion", "--precisions", "8,3", "--images", "2"],
     "precisions: '3' is not a precision of this kind"),
])
def test_infer_errors(capsys, argv, msg):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert msg in err.strip().splitlines()[-1]


def test_infer_own_data_file(capsys, tmp_path):
    from tessera.sim import digits
    x_tr, _, x_te, y_te = digits.load_split()
    f = tmp_path / "d.npz"
    np.savez(f, x=x_te[:16], y=y_te[:16], x_calib=x_tr[:200])
    code, out, err = run(capsys, "infer", "digits-mlp", "int8-4x4", "--data", str(f), "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["images"] == 16 and r["equal_to_reference"] == 16


def test_run_model_on_the_virtual_board(capsys, tmp_path):
    """The network `tessera infer --save` wrote runs with `tessera run --model` on the golden
    virtual board (framed link, the board's baud): accuracy, equal to the reference, link time."""
    q = tmp_path / "mlp.npz"
    code, _, err = run(capsys, "infer", "digits-mlp", "icebreaker", "--images", "4", "--save",
                       str(q))
    assert code == 0, err
    code, out, err = run(capsys, "run", "icebreaker", "--board", "icebreaker", "--port",
                         "sim:golden", "--model", str(q), "--images", "20")
    assert code == 0, err
    first = out.splitlines()[0]
    assert first.startswith("digits_mlp on tessera_icebreaker (icebreaker, sim:golden): 20 "
                            "images, accuracy ")
    assert first.endswith("20/20 equal to the reference")
    assert "link efficiency" in out
    code, _, err = run(capsys, "run", "fp8", "--board", "ulx3s", "--port", "sim:golden",
                       "--model", str(q), "--images", "2")
    assert code == 2 and "quantized for another PE" in err

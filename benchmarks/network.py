"""The digits networks on every PE kind: accuracy, bit-exactness, cycles and bytes per image,
measured on the Verilated RTL; int8 QDQ against onnxruntime; simulation speed.

For each kind in ``KINDS`` (a preset, optional ``[pe]`` overrides, PTQ options) and each
network (the MLP 64-64-10 and the CNN conv 3x3 -> 8, conv 3x3 -> 16, max pool, dense -> 10,
trained deterministically by `tessera.sim.digits`):

1. quantize the float model for the kind (`tessera.sim.ptq.quantize`, calibration: the 1347
   training images);
2. run the 450 test images on the core's RTL (`tessera.sim.vsim.VerilatorCore`, the Verilog
   `tessera generate` writes, driven in bulk) and on the golden core (`tessera.sim.core`),
   both through `tessera.sim.qnet.run_network`, batch 50;
3. count the images whose RTL outputs equal the golden core's, and those equal to the
   independent reference (`tessera.sim.qnet.reference_network`);
4. accuracy against the labels, beside the float model's; cycles, ideal cycles and bytes over
   the host link per image and per layer; wall time, images/s and simulated cycles/s.

``qdq``: the int8 QDQ models that ``onnxruntime.quantization.quantize_static`` writes, imported
(`tessera.sim.onnx_import.load_qdq`) and run on the ``int8-8x8`` RTL, against onnxruntime's
own execution of the same model: each int8 output value identical / one level apart / more,
and the top-1 class.

Writes ``benchmarks/results/network.{json,md,png}``.

Usage::

    .venv/bin/python benchmarks/network.py [--kinds int8,fp8_e4m3,...] [--nets mlp,cnn]
        [--images N] [--part kinds|qdq|all]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"

#: (label, preset, [pe] overrides, PTQ options per net or for both)
KINDS = [
    ("int8", "int8-8x8", {}, {}),
    ("int4", "int8-8x8", {"a_bits": 4, "b_bits": 4}, {"method": "sawb",
                                                       "weight_method": "sawb"}),
    ("fp8_e4m3", "fp8", {}, {}),
    ("fp8_e5m2", "fp8", {"input_format": "fp8_e5m2", "acc_format": "fp32"}, {}),
    ("hfp8", "fp8", {"input_format": "hfp8"}, {}),
    ("fp16", "fp8", {"input_format": "fp16", "acc_format": "fp32"}, {}),
    ("bf16", "fp8", {"input_format": "bf16", "acc_format": "fp32"}, {}),
    ("dlfloat16", "dlfloat", {}, {}),
    ("bitfusion 8", "bitfusion", {}, {"mlp": {"precisions": "8,8"},
                                      "cnn": {"precisions": "8,8,8"}}),
    ("bitfusion 4", "bitfusion", {}, {"mlp": {"precisions": "4,4"},
                                      "cnn": {"precisions": "4,4,4"}}),
    ("bitfusion 2", "bitfusion", {}, {"mlp": {"precisions": "2,2"},
                                      "cnn": {"precisions": "2,2,2"}}),
    ("bitfusion 8/4x2/8", "bitfusion", {}, {"mlp": {"precisions": "8,4x2"},
                                            "cnn": {"precisions": "8,4x2,8"}}),
    ("multiprec", "multiprec", {}, {}),
    ("ternary", "ternary", {}, {}),
    ("fpec", "fpec", {}, {}),
    ("biscaled", "biscaled", {}, {}),
]


def _cfg(preset, overrides):
    from tessera.generators.config import config_from_dict, load_config
    cfg = load_config(preset)
    if not overrides:
        return cfg
    d = cfg.to_dict()
    d["pe"].update(overrides)
    d["core"]["name"] = d["core"]["name"] + "_" + "_".join(
        str(v) for v in overrides.values())
    return config_from_dict(d)


def _run(cfg, q, x, drv_transport, batch):
    from tessera.sim.driver import TesseraDriver
    from tessera.sim.qnet import run_network
    drv = TesseraDriver(drv_transport, cfg)

    async def go():
        await drv.connect()
        return await run_network(drv, q, x, batch=batch)
    t0 = time.perf_counter()
    res = asyncio.run(go())
    return res, time.perf_counter() - t0


def _layers(res, n):
    from tessera.sim.layers import describe
    out = []
    for r in res.records:
        if not r.stats:
            continue
        cyc = r.total("cycles")
        out.append({"layer": describe(r.layer), "epilogue": r.epilogue,
                    "gemms": [list(g) for g in r.stats[0].gemms],
                    "cycles_per_image": cyc / n,
                    "ideal_per_image": r.total("ideal_cycles") / n,
                    "utilization": r.total("ideal_cycles") / cyc if cyc else None,
                    "bytes_to_core_per_image": r.total("bytes_out") / n,
                    "bytes_from_core_per_image": r.total("bytes_in") / n,
                    "runs": r.total("runs")})
    return out


def measure_kind(label, preset, overrides, opts, net_name, fm, data, images, batch, say):
    from tessera.sim.core import GoldenCore, GoldenTransport
    from tessera.sim.ptq import quantize
    from tessera.sim.qnet import k_splits_of, reference_network
    from tessera.sim.vsim import VerilatorCore
    x_tr, _, x_te, y_te = data
    cfg = _cfg(preset, overrides)
    opts = opts.get(net_name, opts) if net_name in opts else opts
    q = quantize(fm, cfg.pe, x_tr, **opts)
    x, y = x_te[:images], y_te[:images]
    n = len(x)
    say(f"[network] {label} / {net_name}: golden core")
    gold, gold_wall = _run(cfg, q, x, GoldenTransport(GoldenCore(cfg)), batch)
    say(f"[network] {label} / {net_name}: Verilator RTL")
    with VerilatorCore(cfg, progress=say) as core:
        rtl, wall = _run(cfg, q, x, core.transport, batch)
        sim_cycles = core.cycles
    ref = reference_network(q, cfg.pe, x, k_splits=k_splits_of(rtl))
    eq_gold = sum(np.array_equal(a, b) for a, b in zip(rtl.outputs, gold.outputs))
    eq_ref = sum(np.array_equal(a, b) for a, b in zip(rtl.outputs, ref.outputs))
    cyc_gold = [r.total("cycles") for r in gold.records]
    cyc_rtl = [r.total("cycles") for r in rtl.records]
    tot = sum(cyc_rtl)
    ideal = sum(r.total("ideal_cycles") for r in rtl.records)
    row = {"kind": label, "preset": preset, "pe": cfg.pe.to_dict(), "net": net_name,
           "options": opts, "modes": q.meta.get("modes"), "images": n,
           "float_accuracy": fm.accuracy(x, y),
           "accuracy": float(np.mean(rtl.classes == y)),
           "rtl_equal_golden": int(eq_gold), "rtl_equal_reference": int(eq_ref),
           "cycles_equal_golden": cyc_gold == cyc_rtl,
           "cycles_per_image": tot / n, "ideal_per_image": ideal / n,
           "utilization": ideal / tot if tot else None,
           "bytes_to_core_per_image": sum(r.total("bytes_out") for r in rtl.records) / n,
           "bytes_from_core_per_image": sum(r.total("bytes_in") for r in rtl.records) / n,
           "wall_s": wall, "images_per_s": n / wall, "golden_wall_s": gold_wall,
           "simulated_cycles": int(sim_cycles),
           "simulated_cycles_per_s": sim_cycles / wall,
           "layers": _layers(rtl, n)}
    say(f"[network] {label} / {net_name}: {100 * row['accuracy']:.2f} % (float "
        f"{100 * row['float_accuracy']:.2f} %), RTL = golden on {eq_gold}/{n}, "
        f"{wall:.1f} s")
    return row


def qdq_layer_analysis(q, pe, model_path, x):
    """Layer by layer, with onnxruntime's own int8 input to each layer: how many of the layer's
    int8 outputs tessera's requantization (the epilogue's reference, gemmlowp) gives
    identically to onnxruntime, and for each difference how far the exact real value
    ``(acc + bias) * s_x s_w / s_y + z_y`` lies from a rounding boundary (a half-integer)."""
    from fractions import Fraction

    import onnx
    from tessera.sim import digits
    from tessera.sim.layers import apply_host, reference_codes
    from tessera.sim.qnet import _channels_last
    m = onnx.load(str(model_path))
    names = [q.input["onnx_tensor"]] + [ql.act["onnx_tensor"] for ql in q.layers
                                        if ql.epilogue is not None]
    have = {o.name for o in m.graph.output}
    for t in names:
        if t not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.INT8,
                                                                     None))
    sess = digits.ort_session(m.SerializeToString())
    outs = dict(zip([o.name for o in sess.get_outputs()],
                    sess.run(None, {"input": np.asarray(x, dtype=np.float32)})))
    epi = pe.epilogue()
    cur = outs[q.input["onnx_tensor"]].astype(np.int64)
    rows = []
    for i, ql in enumerate(q.layers):
        if not ql.on_chip:
            cur = apply_host(ql.layer, cur)
            continue
        if ql.epilogue is None:
            break
        xc = pe.encode(cur, operand="a", mode=ql.mode)
        wc = pe.encode(ql.w, operand="b", mode=ql.mode)
        acc = reference_codes(pe, ql.layer, xc, wc, mode=ql.mode)
        params = epi.user_params(ql.epilogue, ql.bias, ql.channels, mode=ql.mode)
        flat = _channels_last(np.asarray(acc, dtype=np.uint64), ql.layer).reshape(-1,
                                                                                 ql.channels)
        ours = epi.decode(np.asarray(epi.reference_codes(flat, params, mode=ql.mode),
                                     dtype=np.uint64), mode=ql.mode)
        theirs = _channels_last(outs[ql.act["onnx_tensor"]].astype(np.int64),
                                ql.layer).reshape(-1, ql.channels)
        diff = np.abs(ours - theirs)
        accv = pe.decode(flat, mode=ql.mode)
        dist, inside = [], 0
        for r, c in zip(*np.nonzero(diff)):
            real = (Fraction(int(accv[r, c])) + int(params["bias"][c])) * \
                Fraction(ql.epilogue["scale"][c]) + ql.act["zero_point"]
            frac = real - (real.numerator // real.denominator)
            dist.append(float(abs(frac - Fraction(1, 2))))
            # gemmlowp rounds twice (the high half, then the shift): its result can differ
            # from the correctly rounded one only within 2**-(shift + 1) of a half-integer
            inside += dist[-1] <= 2.0 ** -(int(params["shift"][c]) + 1)
        rows.append({"layer": i, "type": ql.layer.type, "values": int(diff.size),
                     "identical": int((diff == 0).sum()), "off_by_one": int((diff == 1).sum()),
                     "more": int((diff > 1).sum()),
                     "max_distance_from_half": max(dist) if dist else None,
                     "within_double_rounding_window": int(inside)})
        cur = outs[ql.act["onnx_tensor"]].astype(np.int64)
    return rows


def measure_qdq(net_name, net, data, images, batch, say):
    from tessera.sim import digits
    from tessera.sim.onnx_import import load_qdq
    from tessera.sim.vsim import VerilatorCore
    x_tr, _, x_te, y_te = data
    cfg = _cfg("int8-8x8", {})
    with tempfile.TemporaryDirectory() as d:
        f, qf = Path(d) / "f.onnx", Path(d) / "q.onnx"
        digits.export_onnx(net, f)
        digits.export_qdq(f, x_tr, qf)
        q = load_qdq(qf, cfg.pe)
        sess = digits.ort_session(qf)
        x, y = x_te[:images], y_te[:images]
        o = sess.run(None, {"input": x})[0]
        per_layer = qdq_layer_analysis(q, cfg.pe, qf, x)
    with VerilatorCore(cfg, progress=say) as core:
        rtl, wall = _run(cfg, q, x, core.transport, batch)
    act = q.layers[-1].act
    levels = np.rint(o / act["scale"]).astype(np.int64) + act["zero_point"]
    diff = np.abs(levels - rtl.outputs)
    cls_ort = np.argmax(o, axis=1)
    row = {"net": net_name, "images": len(x), "values": int(diff.size),
           "identical": int((diff == 0).sum()), "off_by_one": int((diff == 1).sum()),
           "more": int((diff > 1).sum()), "same_class": int((cls_ort == rtl.classes).sum()),
           "accuracy_tessera": float(np.mean(rtl.classes == y)),
           "accuracy_onnxruntime": float(np.mean(cls_ort == y)),
           "float_accuracy": net.accuracy(x, y), "wall_s": wall, "per_layer": per_layer}
    say(f"[network] qdq / {net_name}: identical {row['identical']}/{row['values']}, "
        f"off by one {row['off_by_one']}, more {row['more']}; same class "
        f"{row['same_class']}/{len(x)}")
    return row


def render(res):
    lines = ["# Digits networks on every PE kind (Verilated RTL)", "",
             "Made by `benchmarks/network.py`; 450 test images unless the row says otherwise; "
             "calibration: the 1347 training images. `RTL = golden`: images whose outputs are "
             "bit-identical between the Verilated RTL and the golden core "
             "(`RTL = ref`: and the independent reference).", "",
             "| kind | net | modes | images | float | accuracy | RTL = golden | RTL = ref | "
             "cycles/image | util | bytes to/from core per image | RTL wall s | images/s | "
             "Mcycles/s |", "|" + "---|" * 14]
    for r in res.get("kinds", []):
        modes = "/".join(m for m in (r["modes"] or []) if m) or "-"
        lines.append(
            f"| {r['kind']} | {r['net']} | {modes} | {r['images']} | "
            f"{100 * r['float_accuracy']:.2f} % | {100 * r['accuracy']:.2f} % | "
            f"{r['rtl_equal_golden']}/{r['images']} | {r['rtl_equal_reference']}/{r['images']} | "
            f"{r['cycles_per_image']:,.0f} | {100 * (r['utilization'] or 0):.1f} % | "
            f"{r['bytes_to_core_per_image']:,.0f} / {r['bytes_from_core_per_image']:,.0f} | "
            f"{r['wall_s']:.1f} | {r['images_per_s']:.1f} | "
            f"{r['simulated_cycles_per_s'] / 1e6:.2f} |")
    if res.get("qdq"):
        lines += ["", "## int8 QDQ: tessera (RTL) against onnxruntime", "",
                  "| net | images | int8 outputs identical | off by one | more | same class | "
                  "accuracy tessera | accuracy onnxruntime | float |", "|" + "---|" * 9]
        for r in res["qdq"]:
            lines.append(f"| {r['net']} | {r['images']} | {r['identical']}/{r['values']} | "
                         f"{r['off_by_one']} | {r['more']} | {r['same_class']}/{r['images']} | "
                         f"{100 * r['accuracy_tessera']:.2f} % | "
                         f"{100 * r['accuracy_onnxruntime']:.2f} % | "
                         f"{100 * r['float_accuracy']:.2f} % |")
        lines += ["", "Layer by layer, each layer fed onnxruntime's own int8 input (so a "
                  "difference is that layer's requantization, not one carried from an earlier "
                  "layer); `distance`: the largest distance of a differing value's exact real "
                  "requantized value `(acc + bias) * s_x s_w / s_y + z_y` from a rounding "
                  "boundary (a half-integer):", "",
                  "| net | layer | values | identical | off by one | more | distance | "
                  "in gemmlowp's window |", "|---|---|---|---|---|---|---|---|"]
        for r in res["qdq"]:
            for L in r.get("per_layer", []):
                d = L["max_distance_from_half"]
                lines.append(f"| {r['net']} | {L['layer']} {L['type']} | {L['values']} | "
                             f"{L['identical']} | {L['off_by_one']} | {L['more']} | "
                             f"{'-' if d is None else f'{d:.2e}'} | "
                             f"{L['within_double_rounding_window']}/{L['off_by_one'] + L['more']} |")
        lines += ["", "Why values differ: onnxruntime fuses the QDQ graph into QLinearConv / "
                  "QGemm, which multiply the int32 accumulator by the float32 scale "
                  "`s_x s_w / s_y` and round half to even: within float32 precision, the "
                  "correctly rounded value. tessera's epilogue is gemmlowp's (TFLite's) "
                  "integer requantization, which rounds twice: the high half of `acc * M` "
                  "(round half up), then a rounding right shift by `shift` (ties away from "
                  "zero). The two can disagree only where the exact value lies within "
                  "`2**-(shift + 1)` of a half-integer; the last column counts the "
                  "differences inside that window (all of them means: every difference is "
                  "gemmlowp's double rounding, none is an error). Differences in the network's "
                  "final outputs also include those carried from earlier layers."]
    per_layer = [r for r in res.get("kinds", []) if r["kind"] == "int8"]
    if per_layer:
        lines += ["", "## Per layer, int8 (`int8-8x8`)", "",
                  "| net | layer | epilogue | GEMMs (M x N x K, batch 50) | cycles/image | "
                  "ideal | util | bytes to/from core per image |", "|" + "---|" * 8]
        for r in per_layer:
            for L in r["layers"]:
                g = L["gemms"]
                mp = "{}x{}x{}".format(*g[0]) + (f" x{len(g)}" if len(g) > 1 else "")
                lines.append(f"| {r['net']} | {L['layer']} | {L['epilogue']} | {mp} | "
                             f"{L['cycles_per_image']:,.0f} | {L['ideal_per_image']:,.0f} | "
                             f"{100 * (L['utilization'] or 0):.1f} % | "
                             f"{L['bytes_to_core_per_image']:,.0f} / "
                             f"{L['bytes_from_core_per_image']:,.0f} |")
    (RESULTS / "network.md").write_text("\n".join(lines) + "\n")


def plot(res):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = res.get("kinds", [])
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(11, 4.5))
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    pos = np.arange(len(kinds))
    for j, net in enumerate(("mlp", "cnn")):
        acc = [next((100 * r["accuracy"] for r in rows if r["kind"] == k and r["net"] == net),
                    np.nan) for k in kinds]
        ax.bar(pos + (j - 0.5) * 0.4, acc, 0.4, label=f"{net} (RTL)")
        fl = [next((100 * r["float_accuracy"] for r in rows if r["net"] == net), np.nan)]
        ax.axhline(fl[0], ls="--", lw=0.8, color=f"C{j}", label=f"{net} float")
    ax.set_xticks(pos, kinds, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("digits: accuracy per PE kind on the Verilated RTL")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(RESULTS / "network.png", dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default="", help="comma-separated labels of KINDS (default all)")
    ap.add_argument("--nets", default="mlp,cnn")
    ap.add_argument("--images", type=int, default=450)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--part", choices=("kinds", "qdq", "all"), default="all")
    args = ap.parse_args(argv)
    from tessera.sim import digits
    from tessera.sim.ptq import FloatModel

    def say(m):
        print(m, file=sys.stderr, flush=True)
    out = RESULTS / "network.json"
    res = json.loads(out.read_text()) if out.exists() else {}
    data = digits.load_split()
    nets = {}
    for name in args.nets.split(","):
        nets[name] = digits.train_mlp() if name == "mlp" else digits.train_cnn()
    want = [k for k in args.kinds.split(",") if k]
    if args.part in ("kinds", "all"):
        rows = [r for r in res.get("kinds", [])
                if not ((not want or r["kind"] in want) and r["net"] in nets)]
        for label, preset, over, opts in KINDS:
            if want and label not in want:
                continue
            for name, net in nets.items():
                rows.append(measure_kind(label, preset, over, opts, name,
                                         FloatModel.from_net(net), data, args.images,
                                         args.batch, say))
                res["kinds"] = rows
                out.write_text(json.dumps(res, indent=1))
    if args.part in ("qdq", "all"):
        res["qdq"] = [r for r in res.get("qdq", []) if r["net"] not in nets]
        for name, net in nets.items():
            res["qdq"].append(measure_qdq(name, net, data, args.images, args.batch, say))
        out.write_text(json.dumps(res, indent=1))
    order = {k[0]: i for i, k in enumerate(KINDS)}
    res["kinds"] = sorted(res.get("kinds", []), key=lambda r: (order.get(r["kind"], 99),
                                                                r["net"]))
    out.write_text(json.dumps(res, indent=1))
    render(res)
    plot(res)
    bad = [r for r in res.get("kinds", []) if r["rtl_equal_golden"] != r["images"]
           or not r["cycles_equal_golden"]]
    for r in bad:
        say(f"[network] MISMATCH {r['kind']} / {r['net']}: RTL = golden on "
            f"{r['rtl_equal_golden']}/{r['images']}, cycles equal {r['cycles_equal_golden']}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

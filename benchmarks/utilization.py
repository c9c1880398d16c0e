"""Utilization per layer and the stall breakdown, from the core's own cycle counters (COUNTERS).

Workloads: the digits CNN (its layer shapes at batch 50) and a VGG-16-style stack scaled to the
array (32x32 inputs, 10 convolutions 3x3 / pad 1 in four stages of 16, 32, 64, 64 channels on
8 columns, x cols / 8 on others; max pools on the host between stages; two dense layers; a
batch that fills whole row tiles: `workloads`) and a stack of two dense layers whose shapes fill
the array (batch 8 x rows, widths multiples of cols), random int8 operands. Presets: the default
``int8-8x8`` and ``ulx3s`` (12x12), each as shipped (one bank per store: the layer's RUNs and
transfers one after another) and with ``a_banks = b_banks = c_banks = 2`` (ping-pong: each RUN
sent while the one before executes, the core holds it and starts it the cycle that one
completes; the next tiles written and finished results read meanwhile). Every layer runs on the
preset's Verilated RTL (`tessera.sim.vsim.VerilatorCore`) through the host driver's layer
mappers with ``count_causes=True``: the driver reads COUNTERS before and after each layer.
Every output is checked against the engine's independent layer reference (a direct convolution
/ a matrix product), every RUN's cycles against the golden core's.

Per layer: ``% of peak, RUNs`` = ideal cycles (the layer's MACs at the array's peak rate) over
the RUNs' busy cycles (check + compute + other: the link excluded); ``% of peak, with host`` =
ideal over every cycle of the layer on the harness's byte-per-cycle stream, host waits
included; the causes as shares of the layer's cycles. Per network: the same over all its
on-chip layers. Host-side layers (pooling, flatten) are not cycles.

Writes ``benchmarks/results/utilization.{json,md,png}``.

Usage::

    .venv/bin/python benchmarks/utilization.py [--presets int8-8x8,ulx3s] [--no-banks]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
PRESETS = ("int8-8x8", "ulx3s")


def say(msg, _t0=time.monotonic()):
    print(f"[{time.monotonic() - _t0:7.1f}s] {msg}", flush=True)


def workloads(cols=8, rows=8):
    """The two networks; the VGG stack is scaled to the array: channels 16, 32, 64, 64 on 8
    columns (x cols / 8, so 24, 48, 96, 96 on the ULX3S's 12), and a batch of rows /
    gcd(rows, 16) images so that every stage's pixels fill whole row tiles (1 on 8 rows, 3 on
    12: the last stage has 4 x 4 pixels per image)."""
    import math
    from tessera.sim.layers import Conv2d, Dense
    cnn = [("conv1", Conv2d(1, 8, kernel=3, padding=1), (50, 1, 8, 8)),
           ("conv2", Conv2d(8, 16, kernel=3, padding=1), (50, 8, 8, 8)),
           ("fc", Dense(256, 10), (50, 256))]
    vgg, c, hw = [], 3, 32
    batch = rows // math.gcd(rows, 16)
    widths = [w * cols // 8 for w in (16, 32, 64, 64)]
    for s, (cout, reps) in enumerate(zip(widths, (2, 2, 3, 3)), 1):
        for r in range(1, reps + 1):
            vgg.append((f"conv{s}_{r}", Conv2d(c, cout, kernel=3, padding=1),
                        (batch, c, hw, hw)))
            c = cout
        hw //= 2                                  # max pool on the host
    vgg += [("fc1", Dense(c * hw * hw, 64), (batch, c * hw * hw)),
            ("fc2", Dense(64, 10), (batch, 64))]
    # A dense stack whose shapes fill the array (batch 8 x rows, widths multiples of cols): the
    # dense layers' own utilization, apart from the small batches of the networks above.
    mlp, width = [], 64 * cols
    for i, out in enumerate((32 * cols, 16 * cols), 1):
        mlp.append((f"fc{i}", Dense(width, out), (8 * rows, width)))
        width = out
    return {"digits CNN (batch 50)": cnn, "VGG-style 32x32": vgg,
            f"dense stack (batch {8 * rows})": mlp}


#: The ping-pong variant of a preset: A, B and C of two banks each.
BANKS = {"a_banks": 2, "b_banks": 2, "c_banks": 2}


def derive(preset, banks=False):
    from tessera.generators.config import config_from_dict, load_config
    d = load_config(preset).to_dict()
    d["core"]["boards"] = []
    if banks:
        d["memory"].update(BANKS)
    return config_from_dict(d, source=f"preset:{preset}" + (" + banks" if banks else ""))


def run_preset(preset, banks=False):
    from tessera.sim.core import GoldenCore, GoldenTransport
    from tessera.sim.driver import TesseraDriver
    from tessera.sim.vsim import VerilatorCore
    cfg = derive(preset, banks)
    schedule = "ping-pong" if banks else "one after another"
    out = []
    with VerilatorCore(cfg, progress=say) as core:
        drv = TesseraDriver(core.transport, cfg, count_causes=True)
        gold = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
        for net, layers in workloads(cfg.cols, cfg.rows).items():
            for i, (name, layer, shape) in enumerate(layers):
                x, w = cfg.engine.layer_operands(layer, list(shape), kind="random", seed=40 + i)
                y, st = asyncio.run(drv.run_layer(layer, x, w, raw=True))
                want = cfg.engine.layer_reference(layer, x, w)
                if not np.array_equal(np.asarray(y), np.asarray(want)):
                    raise SystemExit(f"{preset} {net} {name}: outputs differ from the reference")
                _, gst = asyncio.run(gold.run_layer(layer, x, w, raw=True))
                if st.run_cycles != gst.run_cycles:
                    raise SystemExit(f"{preset} {net} {name}: RUN cycles differ from the golden "
                                     f"core's")
                c = st.counters
                row = {"preset": preset, "schedule": schedule, "network": net, "layer": name,
                       "shape": list(shape), "what": repr(layer), "runs": st.runs,
                       "ideal_cycles": st.ideal_cycles, "run_cycles": st.cycles,
                       "counters": c.as_dict(), "bytes_to_core": st.bytes_out,
                       "bytes_from_core": st.bytes_in}
                if c.busy != st.cycles:
                    raise SystemExit(f"{preset} {net} {name}: COUNTERS busy {c.busy} != the RUNs' "
                                     f"STATUS cycles {st.cycles}")
                row["peak_runs"] = st.ideal_cycles / c.busy
                row["peak_with_host"] = st.ideal_cycles / c.total
                out.append(row)
                say(f"{preset:<9} {schedule:<17} {net:<26} {name:<8} "
                    f"{100 * row['peak_runs']:5.1f} % of peak in RUNs, "
                    f"{100 * row['peak_with_host']:5.1f} % with the host; compute "
                    f"{c.compute}, other {c.other}, check {c.check}, data {c.data}, "
                    f"idle {c.idle}")
    return out


def totals(rows):
    out = []
    keys = sorted({(r["preset"], r["schedule"], r["network"]) for r in rows})
    for preset, sched, net in keys:
        rs = [r for r in rows if (r["preset"], r["schedule"], r["network"]) == (preset, sched, net)]
        c = {k: sum(r["counters"][k] for r in rs) for k in rs[0]["counters"]}
        ideal = sum(r["ideal_cycles"] for r in rs)
        busy = c["check"] + c["compute"] + c["other"]
        out.append({"preset": preset, "schedule": sched, "network": net, "layers": len(rs),
                    "ideal_cycles": ideal, "counters": c, "peak_runs": ideal / busy,
                    "peak_with_host": ideal / sum(c.values())})
    return out


def pct(v):
    return f"{100 * v:.1f} %"


def render(res):
    lines = ["# Utilization per layer and the stall breakdown", "",
             "From `benchmarks/utilization.py` (its docstring has the method): every layer on "
             "the preset's Verilated RTL, outputs equal to the independent reference, RUN cycles "
             "equal to the golden core's; causes from the core's COUNTERS. *one after another*: "
             "the preset as shipped (one bank per store: write, RUN, wait, read); *ping-pong*: "
             "the preset with `a_banks = b_banks = c_banks = 2` (each RUN sent while the one "
             "before executes and held until it completes, next tiles written and finished "
             "results read from the other banks meanwhile). *% of peak, RUNs*: ideal cycles "
             "over the RUNs' busy cycles (the link excluded: what the array reaches when the "
             "data is there); *with host*: over every cycle of the layer on the Verilated "
             "harness's byte-per-cycle stream. Causes as shares of the layer's cycles.", "",
             "| preset | schedule | network | layer | RUNs | ideal | busy | % of peak, RUNs | "
             "% of peak, with host | computing | fill, drain, bubbles | check | waiting for "
             "data | waiting on the host |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["layers"]:
        c = r["counters"]
        tot = sum(c.values())
        busy = c["check"] + c["compute"] + c["other"]
        lines.append(f"| `{r['preset']}` | {r['schedule']} | {r['network']} | {r['layer']} | "
                     f"{r['runs']} | {round(r['ideal_cycles'])} | {busy} | "
                     f"{pct(r['peak_runs'])} | {pct(r['peak_with_host'])} | "
                     f"{pct(c['compute'] / tot)} | {pct(c['other'] / tot)} | "
                     f"{pct(c['check'] / tot)} | {pct(c.get('data', 0) / tot)} | "
                     f"{pct(c['idle'] / tot)} |")
    lines += ["", "Whole networks (their on-chip layers):", "",
              "| preset | schedule | network | layers | % of peak, RUNs | % of peak, with host | "
              "computing | fill, drain, bubbles | check | waiting for data | waiting on the "
              "host |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in res["networks"]:
        c = t["counters"]
        tot = sum(c.values())
        lines.append(f"| `{t['preset']}` | {t['schedule']} | {t['network']} | {t['layers']} | "
                     f"{pct(t['peak_runs'])} | {pct(t['peak_with_host'])} | "
                     f"{pct(c['compute'] / tot)} | {pct(c['other'] / tot)} | "
                     f"{pct(c['check'] / tot)} | {pct(c.get('data', 0) / tot)} | "
                     f"{pct(c['idle'] / tot)} |")
    lines += ["", "The host side is the Verilated harness's byte stream (a byte per cycle when "
              "the host has one) plus the host's own time between commands, so those shares "
              "vary a little from run to run; on a board the UART makes them larger. Layers "
              "whose operands are im2col patches move K bytes per output pixel over the link "
              "against K/cols cycles of the array, so with the host included they stay "
              "link-bound even when every transfer overlaps a RUN."]
    return "\n".join(lines) + "\n"


def plot(res, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    groups = sorted({(r["preset"], r["network"]) for r in res["layers"]
                     if r["schedule"] == "ping-pong"} or
                    {(r["preset"], r["network"]) for r in res["layers"]})
    fig, axes = plt.subplots(len(groups), 1, figsize=(10, 2.6 * len(groups)), squeeze=False)
    for ax, (preset, net) in zip(axes[:, 0], groups):
        rs = [r for r in res["layers"] if (r["preset"], r["network"]) == (preset, net)]
        rs = [r for r in rs if r["schedule"] == rs[-1]["schedule"]]
        pos = np.arange(len(rs))
        bottom = np.zeros(len(rs))
        for key, label in (("compute", "computing"), ("other", "fill, drain, bubbles"),
                           ("check", "check")):
            v = np.array([r["counters"][key] / max(1, r["counters"]["check"]
                                                   + r["counters"]["compute"]
                                                   + r["counters"]["other"]) for r in rs])
            ax.bar(pos, 100 * v, bottom=100 * bottom, label=label)
            bottom += v
        ax.plot(pos, [100 * r["peak_runs"] for r in rs], "k.", label="% of peak")
        ax.set_xticks(pos, [r["layer"] for r in rs], fontsize=8)
        ax.set_ylim(0, 105)
        ax.set_ylabel("% of RUN cycles")
        ax.set_title(f"{preset}: {net}", fontsize=9)
    axes[0, 0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--no-banks", action="store_true",
                    help="only the presets as shipped (no ping-pong variant)")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    rows = []
    for p in [p for p in args.presets.split(",") if p]:
        rows += run_preset(p)
        if not args.no_banks:
            rows += run_preset(p, banks=True)
    res = {"command": "python benchmarks/utilization.py " + " ".join(sys.argv[1:]),
           "layers": rows, "networks": totals(rows), "wall_s": round(time.monotonic() - t0, 1)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "utilization.json").write_text(json.dumps(res, indent=1) + "\n")
    (RESULTS / "utilization.md").write_text(render(res))
    plot(res, RESULTS / "utilization.png")
    for t in res["networks"]:
        say(f"{t['preset']:<9} {t['schedule']:<17} {t['network']:<26} {pct(t['peak_runs'])} of peak in RUNs, "
            f"{pct(t['peak_with_host'])} with the host")
    say(f"wrote {RESULTS / 'utilization.md'}")


if __name__ == "__main__":
    main()

"""Link traffic per image of the digits MLP before and after weight residency and on-chip
chaining.

The digits MLP (Flatten, Dense 64->64 with the on-chip epilogue, Dense 64->10; trained and
quantized by tessera for each core's PE kind) over the 450 test images in batches of 50,
through the host driver onto the golden core (exact bytes of every command and response, RUN
cycles equal to the RTL's), three ways:

* ``one at a time``: each layer's operands written, its results read back (the driver without
  its resident mirror: weights re-sent every batch);
* ``+ resident weights``: the same with the driver's mirror (`TesseraDriver(resident=True)`:
  unchanged words are not re-sent; the GEMM mapper gives every layer its own B region when all
  fit);
* ``+ chaining``: on cores whose mapper chains (`DenseMapper.chain`: the dense tree engine with
  ``inputs == outputs``), each layer's epilogue outputs go straight into store A for the next,
  weights, scales and parameters in their own regions: only the input image goes in and the
  logits' accumulators come out.

Cores: a ternary tree core with 8 inputs and 8 outputs (the ``ternary`` preset with
``array.outputs = 8`` so that a result word is an A word, and deeper stores so that the MLP's
regions fit); an int8 GEMM core with the on-chip epilogue and the chain writer (the
``int8-requant`` preset, 4x4, with ``array.chain = true`` and ``a_banks = 2``, at 3 Mbaud); and
the ``icebreaker`` int8 preset (no epilogue: requantization on the host, so nothing to
chain). Link time: payload bytes x 10 line bits over the core's ``host.baud`` (3 Mbaud, raw
UART, no framing); compute: the RUNs' cycles over ``core.clock_mhz``. The chained run is repeated on the Verilated RTL for the first batch:
logits and RUN cycles must equal the golden core's.

Writes ``benchmarks/results/chain.{json,md,png}``. Usage::

    .venv/bin/python benchmarks/chain.py [--images N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"


def say(msg, _t0=time.monotonic()):
    print(f"[{time.monotonic() - _t0:7.1f}s] {msg}", flush=True)


def cores():
    from tessera.generators.config import config_from_dict, load_config
    t = load_config("ternary").to_dict()
    t["core"]["boards"] = []
    t["core"]["name"] = "tessera_ternary_8x8"
    t["array"].update(outputs=8)
    t["memory"].update(a_depth=1024, b_depth=256, c_depth=1024, p_depth=16)
    r = load_config("int8-requant").to_dict()
    r["core"]["boards"] = []
    r["core"]["name"] = "tessera_int8_chain"
    r["array"]["chain"] = True
    r["memory"]["a_banks"] = 2
    r["host"]["baud"] = 3_000_000
    i = load_config("icebreaker").to_dict()
    i["core"]["boards"] = []
    return {"ternary 8x8 (tree, inputs = outputs)": config_from_dict(t, source="ternary+8x8"),
            "int8 4x4 (systolic, epilogue, chain writer)":
                config_from_dict(r, source="int8-requant+chain"),
            "icebreaker (int8 systolic 2x4, no epilogue)":
                config_from_dict(i, source="preset:icebreaker")}


def run(cfg, q, x, *, resident, chain, transport=None):
    from tessera.sim.core import GoldenCore, GoldenTransport
    from tessera.sim.driver import TesseraDriver
    from tessera.sim.lowering import _Counting
    from tessera.sim.qnet import chain_layers, run_network
    t = _Counting(transport or GoldenTransport(GoldenCore(cfg)))
    drv = TesseraDriver(t, cfg, resident=resident)
    drv.chain = chain
    asyncio.run(drv.connect())
    t.sent = t.received = 0
    chained = chain_layers(drv, q, cfg.engine.epilogue()) is not None if chain else False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = asyncio.run(run_network(drv, q, x, batch=50))
    cycles = sum(c for rec in r.records for s in rec.stats for c in s.run_cycles)
    return r, {"bytes_to_core": t.sent, "bytes_from_core": t.received, "cycles": cycles,
               "chained": chained}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=450)
    args = ap.parse_args(argv)
    from tessera.generators.infer import compile_model
    from tessera.sim import digits
    from tessera.sim.qnet import k_splits_of, reference_network
    xtr, _, xte, yte = digits.load_split()
    x, y = xte[:args.images], yte[:args.images]
    rows = []
    t0 = time.monotonic()
    for name, cfg in cores().items():
        q, _, _ = compile_model("digits-mlp", cfg, xtr)
        base = None
        for label, resident, chain in (("one at a time", False, False),
                                       ("+ resident weights", True, False),
                                       ("+ chaining", True, True)):
            r, m = run(cfg, q, x, resident=resident, chain=chain)
            ref = reference_network(q, cfg.pe, x, k_splits=k_splits_of(r))
            if not np.array_equal(r.logits, ref.logits):
                raise SystemExit(f"{name} {label}: logits differ from the reference")
            if chain and not m["chained"]:
                rows.append({"core": name, "schedule": label, "chained": False,
                             "why": "no epilogue on chip (memory.p_depth = 0): the layers' "
                                    "outputs are requantized on the host"})
                say(f"{name:<38} {label:<20} n/a: cannot chain")
                continue
            n = len(x)
            baud, clock = cfg.host.baud, cfg.core.clock_mhz * 1e6
            per = {k: m[k] / n for k in ("bytes_to_core", "bytes_from_core", "cycles")}
            link_s = (per["bytes_to_core"] + per["bytes_from_core"]) * 10 / baud
            comp_s = per["cycles"] / clock
            row = {"core": name, "schedule": label, "chained": m["chained"], "images": n,
                   "accuracy": float((r.logits.argmax(1) == y).mean()),
                   "bytes_to_core_per_image": per["bytes_to_core"],
                   "bytes_from_core_per_image": per["bytes_from_core"],
                   "cycles_per_image": per["cycles"], "baud": baud, "clock_mhz": clock / 1e6,
                   "link_ms_per_image": 1e3 * link_s, "compute_ms_per_image": 1e3 * comp_s}
            if base is None:
                base = row
            row["link_vs_one_at_a_time"] = row["link_ms_per_image"] / base["link_ms_per_image"]
            rows.append(row)
            say(f"{name:<38} {label:<20} {per['bytes_to_core']:7.1f} B in, "
                f"{per['bytes_from_core']:6.1f} B out per image, link {1e3 * link_s:.3f} ms, "
                f"compute {1e3 * comp_s:.4f} ms, accuracy {row['accuracy']:.3f}")
            if m["chained"]:
                rows[-1]["rtl_check"] = rtl_check(cfg, q, x[:50], r)
    res = {"command": "python benchmarks/chain.py " + " ".join(sys.argv[1:]), "rows": rows,
           "wall_s": round(time.monotonic() - t0, 1)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "chain.json").write_text(json.dumps(res, indent=1) + "\n")
    (RESULTS / "chain.md").write_text(render(res))
    plot(res, RESULTS / "chain.png")
    say(f"wrote {RESULTS / 'chain.md'}")


def rtl_check(cfg, q, x, golden_result):
    """The chained first batch on the Verilated RTL: logits and RUN cycles = the golden core's."""
    from tessera.sim.vsim import VerilatorCore
    with VerilatorCore(cfg, progress=say) as core:
        r, _ = run(cfg, q, x, resident=True, chain=True, transport=core.transport)
    want = golden_result.logits[:len(x)]
    gold_cycles = [c for rec in golden_result.records for s in rec.stats[:1]
                   for c in s.run_cycles]
    rtl_cycles = [c for rec in r.records for s in rec.stats[:1] for c in s.run_cycles]
    ok = bool(np.array_equal(r.logits, want)) and rtl_cycles == gold_cycles
    if not ok:
        raise SystemExit(f"chained RTL differs from the golden core: cycles {rtl_cycles} vs "
                         f"{gold_cycles}")
    say(f"RTL check: {len(x)} images, logits and RUN cycles {rtl_cycles} = golden")
    return {"images": len(x), "logits_equal": True, "run_cycles": rtl_cycles}


def render(res):
    lines = ["# Link traffic per image: residency and on-chip chaining", "",
             "From `benchmarks/chain.py` (its docstring has the method): the digits MLP over "
             "the test images in batches of 50 on the golden core (exact bytes; logits equal "
             "the independent reference in every row; the chained run repeated on the "
             "Verilated RTL for the first batch with equal logits and RUN cycles). Link: "
             "payload bytes x 10 / baud (raw UART, no framing).", "",
             "| core | schedule | bytes in / image | bytes out / image | link ms / image | "
             "compute ms / image | link vs one at a time | accuracy |",
             "|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        if "images" not in r:
            lines.append(f"| {r['core']} | {r['schedule']} | n/a: {r['why']} | | | | | |")
            continue
        lines.append(f"| {r['core']} | {r['schedule']} | {r['bytes_to_core_per_image']:.1f} | "
                     f"{r['bytes_from_core_per_image']:.1f} | {r['link_ms_per_image']:.3f} | "
                     f"{r['compute_ms_per_image']:.4f} | "
                     f"{100 * r['link_vs_one_at_a_time']:.1f} % | {100 * r['accuracy']:.1f} % |")
    lines += ["", "Bytes in: to the core (commands, operands, weights); out: responses "
              "(status bytes, STATUS polls, results). A chained stack still sends each batch's "
              "input images, one RUN per layer and its polls, and reads the last layer's "
              "accumulators (24-bit lanes on the ternary core); the weights cross the link "
              "once per run."]
    return "\n".join(lines) + "\n"


def plot(res, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in res["rows"] if "images" in r]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    pos = np.arange(len(rows))
    ax.barh(pos, [r["link_ms_per_image"] for r in rows], label="link")
    ax.barh(pos, [r["compute_ms_per_image"] for r in rows],
            left=[r["link_ms_per_image"] for r in rows], label="compute")
    ax.set_yticks(pos, [f"{r['core'].split(' (')[0]}: {r['schedule']}" for r in rows],
                  fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ms per image")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()

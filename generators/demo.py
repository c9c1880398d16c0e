"""`make demo`: generate the default core and co-simulate sample layers on it."""

import re
import shlex
import sys
import time

from tessera.generators.config import load_config
from tessera.generators.generate import generate_core
from tessera.generators.regress import run_regression


def main(argv=None):
    """`make demo`; errors end in one line, as for `tessera` (`tessera.generators.cli`)."""
    import os
    from tessera.generators.cli import EXIT_INTERRUPTED, guarded
    argv = sys.argv[1:] if argv is None else argv
    debug = os.environ.get("TESSERA_DEBUG", "") not in ("", "0")
    try:
        return guarded(lambda: _demo(argv), debug=debug)
    except KeyboardInterrupt:
        print("tessera: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def header_lines(cfg):
    """The first two lines: the core and its sections."""
    keys = ", ".join(f"{k}={v}" for k, v in cfg.array.to_dict().items() if k != "kind")
    return [f"tessera demo: {cfg.core.name} ({cfg.source})",
            f"  array {cfg.array.kind} ({keys}), PE {cfg.pe.describe()}, scratchpads A/B/C "
            f"{cfg.memory.a_depth}/{cfg.memory.b_depth}/{cfg.memory.c_depth} words"]


def demo_cases(cfg):
    """(GEMM cases, layer cases) the demo runs on ``cfg``'s core.

    Layers of a small CNN (a 3x3 convolution 16 -> 32 channels on an 8x8 feature map, a
    stride-2 depthwise 3x3, a 256 -> 64 dense layer on a batch of 16) through the engine's
    layer mapper, plus the 64^3 reference GEMM; with the epilogue, the dense layer again
    requantized to the operand format on chip.
    """
    from tessera.sim.layers import Conv2d, Dense
    layers = [
        {"name": "conv3x3_16to32", "layer": Conv2d(16, 32, kernel=3, padding=1).to_dict(),
         "input": [1, 16, 8, 8], "kind": "relu", "seed": 11},
        {"name": "dw3x3_s2", "layer": Conv2d(16, 16, kernel=3, stride=2, padding=1,
                                             groups=16).to_dict(),
         "input": [1, 16, 8, 8], "kind": "random", "seed": 12},
        {"name": "fc_256to64", "layer": Dense(256, 64).to_dict(), "input": [16, 256],
         "kind": "random", "seed": 13},
    ]
    layers = [c for c in layers if c["layer"]["type"] in cfg.engine.layer_types]
    if cfg.engine.epilogue() is not None:
        ex = [c for c in cfg.engine.layer_cases() if c.get("epilogue")]
        if ex:
            layers.append(dict(ex[0], name="fc_requant"))
    cases = [{"name": "reference_64", "m": 64, "n": 64, "k": 64, "kind": "random", "seed": 14}]
    return cases, layers


TABLE_HEADER = (f"{'workload':<34} {'GEMMs':>16} {'cycles':>7} {'ideal':>7} {'util':>7} "
                f"{'from core':>9}  result")


def table_rows(summary):
    """The result table's rows, from `run_regression`'s summary."""
    from tessera.sim.layers import describe
    rows = []
    for g in summary["gemms"]:
        rows.append((f"GEMM {g['m']}x{g['n']}x{g['k']}", f"{g['m']}x{g['n']}x{g['k']}", g, "-"))
    for g in summary["layers"]:
        gem = g["gemms"]
        mp = "{}x{}x{}".format(*gem[0]) + (f" x{len(gem)}" if len(gem) > 1 else "")
        label = describe(g["layer"]) + (" +requant" if g.get("epilogue") else "")
        rows.append((label, mp, g, str(g["bytes_from_core"])))
    out = []
    for label, mp, g, nbytes in rows:
        ok = "bit-exact" if g["mismatches"] == 0 else f"{g['mismatches']} MISMATCHES"
        cyc = "= golden model" if g["cycles"] == g["golden_cycles"] else \
            f"!= golden {g['golden_cycles']}"
        util = 100 * g["ideal_cycles"] / g["cycles"] if g["cycles"] else 0.0
        out.append(f"{label:<34} {mp:>16} {g['cycles']:>7} {g['ideal_cycles']:>7.0f} "
                   f"{util:>6.2f}%  {nbytes:>8}  {ok}, cycles {cyc}")
    return out


def network_line(rec, cfg):
    """The network case as the demo shows it: classes against labels, bit-exactness."""
    right = sum(c == y for c, y in zip(rec["classes"], rec["labels"] or []))
    ok = "bit-exact" if rec["equal_golden"] == rec["images"] else "MISMATCHES"
    cyc = "= golden model" if rec["cycles_equal"] else "!= golden model"
    return (f"\ndigits MLP quantized for {cfg.pe.name}, {rec['images']} test images through the "
            f"RTL: {right}/{rec['images']} classified right, {rec['cycles']} cycles; {ok}, "
            f"cycles {cyc}")


def next_line(cfg, spec):
    """What to try next, for the preset (or file) the demo ran: the same CONFIG throughout."""
    arg = f" {shlex.quote(str(spec))}" if spec else ""
    nxt = ["`make test`", f"`.venv/bin/tessera regress{arg}`", f"`.venv/bin/tessera report{arg}`",
           f"`.venv/bin/tessera infer digits-cnn{arg or ' int8-8x8'} --sim verilator`"]
    if cfg.core.boards and cfg.host.interface == "uart":
        nxt.append(f"`.venv/bin/tessera build{arg} --board {cfg.core.boards[0]}`")
    return "next: " + ", ".join(nxt)


def progress_line(message):
    """A progress message of the regression as the demo shows it (None: not shown): the
    Verilator stage and each test as it finishes, without paths."""
    if message.startswith("[sim] verilator: "):
        return "      " + re.sub(r" into \S+", "", message[len("[sim] "):])
    m = re.match(r"\[regress\]\s+(\d+/\d+ .*)$", message)
    if m:
        return "      " + m[1]
    return None


def _demo(argv):
    from tessera.generators.cli import _keep
    spec = argv[0] if argv else None
    t0 = time.monotonic()
    cfg = load_config(spec)
    keep = _keep()
    for line in header_lines(cfg):
        print(line)
    out = f"build/demo/{cfg.core.name}"
    t = time.monotonic()
    man = generate_core(cfg, out)
    print(f"\n[1/2] generated {out}/{man['verilog']} in {time.monotonic() - t:.1f}s "
          f"(sha256 {man['verilog_sha256'][:12]}..., manifest.json, "
          f"{man['top']}_defs.h)")
    cases, layers = demo_cases(cfg)
    print("[2/2] co-simulating on Verilator (cocotb) against the NumPy golden model...",
          flush=True)

    def say(message):
        line = progress_line(message)
        if line is not None:
            print(line, flush=True)
    s = run_regression(cfg, cases=cases, layers=layers,
                       test_filter="test_gemm|test_layer|test_info|test_network",
                       out_dir=f"build/demo/{cfg.core.name}-regress", progress=say, keep=keep,
                       network=True, network_images=8)
    print(f"\n{TABLE_HEADER}")
    for line in table_rows(s):
        print(line)
    if s.get("network"):
        print(network_line(s["network"], cfg))
    print(f"\n{s['passed']} passed, {s['failed']} failed; Verilator build "
          f"{'compiled' if s['rebuilt'] else 'cached'} ({s['build_seconds']}s); "
          f"total {time.monotonic() - t0:.1f}s")
    print(next_line(cfg, spec))
    return 0 if s["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

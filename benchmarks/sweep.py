"""Figures of `tessera sweep`: the Pareto fronts of both boards, the model's error on the
sweeps' RTL samples, the cache hit rate of a repeated sweep, and the wall time of a sweep
against the serial loop at 1 and 2 Dask workers.

Parts (``--parts``, default all), results merged into ``benchmarks/results/sweep.json`` and
rendered into ``sweep.md``; the plots are ``sweep-pareto-<board>.png``:

``ice40``, ``ecp5``
    ``benchmarks/sweeps/{ice40,ecp5}.toml`` on the digits CNN with ``--synth`` for the board
    (yosys cell counts of every valid point's board build, presets marked), the synthesis cache
    in ``build/sweep-cache``; then the same sweep again: every point a cache hit.
``scaling``
    ``benchmarks/sweeps/scaling.toml`` (a small iCE40 synthesis grid) three times with a fresh
    cache each: serially in this process (``workers=0``), on a LocalCluster of 1 worker and of
    2 workers.

Usage::

    .venv/bin/python benchmarks/sweep.py [--parts ice40,ecp5,scaling] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tessera.generators import sweep as S  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
GRIDS = ROOT / "benchmarks" / "sweeps"
BUILD = ROOT / "build" / "bench" / "sweep"
CACHE = ROOT / "build" / "sweep-cache"


def say(msg, _t0=time.monotonic()):
    print(f"[{time.monotonic() - _t0:7.1f}s] {msg}", flush=True)


def board_part(family, workers):
    grid = S.load_grid(GRIDS / f"{family}.toml")
    out = BUILD / family
    first = S.run_sweep(grid, "digits-cnn", out=out, synth=family, workers=workers,
                        cache=CACHE, progress=say)
    shutil.copy(out / f"pareto-{S.SYNTH_BOARDS[family]}.png",
                RESULTS / f"sweep-pareto-{S.SYNTH_BOARDS[family]}.png")
    say(f"{family}: again, for the cache")
    again = S.run_sweep(grid, "digits-cnn", out=BUILD / f"{family}-again", synth=family,
                        workers=workers, cache=CACHE, progress=None)
    rows = [r for r in first["points"] if not r.get("error")]
    synth = [r for r in rows if r.get("synth", {}).get("ok")]
    errs = [r["model_error_pct"] for r in rows if r.get("model_error_pct") is not None]
    return {"grid": str((GRIDS / f"{family}.toml").relative_to(ROOT)),
            "board": S.SYNTH_BOARDS[family], "points": len(first["points"]),
            "valid": len(rows), "synthesized": len(synth),
            "impossible": [{"index": r["index"], "error": r["error"]}
                           for r in first["points"] if r.get("error")],
            "rtl_sample": [{"index": r["index"], "model": r["cycles_per_image"],
                            "rtl": r["rtl_cycles_per_image"], "error_pct": r["model_error_pct"]}
                           for r in rows if r.get("model_error_pct") is not None],
            "model_error_max_pct": max(map(abs, errs)) if errs else None,
            "wall_s": first["wall_s"], "mode": first["mode"], "cache_first": first["cache"],
            "cache_again": again["cache"], "again_wall_s": again["wall_s"],
            "front_luts": [r["index"] for r in (synth[i] for i in S.pareto_front(
                synth, lambda r: S._area(r, "luts"), lambda r: r["images_per_s"]))],
            "table": S.format_table(first)}


def scaling_part():
    grid = S.load_grid(GRIDS / "scaling.toml")
    out = {}
    for label, workers in (("serial", 0), ("1 worker", 1), ("2 workers", 2)):
        cache = BUILD / "scaling-cache" / label.replace(" ", "-")
        shutil.rmtree(cache, ignore_errors=True)
        say(f"scaling: {label}")
        r = S.run_sweep(grid, "digits-cnn", out=BUILD / f"scaling-{label.replace(' ', '-')}",
                        synth="ice40", workers=workers, cache=cache, progress=say)
        out[label] = {"wall_s": r["wall_s"], "points": len(r["points"]),
                      "misses": r["cache"]["misses"]}
    base = out["serial"]["wall_s"]
    for v in out.values():
        v["speedup"] = round(base / v["wall_s"], 2)
    return out


def markdown(res):
    lines = ["# `tessera sweep`: Pareto fronts, model error, cache and scaling", ""]
    for fam in ("ice40", "ecp5"):
        r = res.get(fam)
        if not r:
            continue
        lines += [f"## {r['board']} (`{r['grid']}`, digits CNN, batch 1)", "",
                  f"{r['points']} points: {r['valid']} valid, {r['synthesized']} synthesized "
                  f"(yosys, the board top included), {len(r['impossible'])} refused by the "
                  f"config check with their reason; {r['mode']}, {r['wall_s']} s. Cache: first "
                  f"run {r['cache_first']['hits']} hits / {r['cache_first']['misses']} built, "
                  f"repeated run {r['cache_again']['hits']} hits / "
                  f"{r['cache_again']['misses']} built ({r['again_wall_s']} s). Model against "
                  f"the RTL on the sampled points: worst {r['model_error_max_pct']} % "
                  f"({', '.join(str(s['index']) for s in r['rtl_sample'])}).", "",
                  f"![Pareto {r['board']}](sweep-pareto-{r['board']}.png)", "",
                  r["table"].split("\n", 4)[-1], ""]
    sc = res.get("scaling")
    if sc:
        lines += ["## Wall time against the serial loop", "",
                  "`benchmarks/sweeps/scaling.toml` with iCE40 synthesis, a fresh cache each "
                  "run (every point built):", "",
                  "| run | points | wall s | speedup |", "|---|---|---|---|"]
        for k, v in sc.items():
            lines.append(f"| {k} | {v['points']} | {v['wall_s']} | {v['speedup']} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="ice40,ecp5,scaling")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    path = RESULTS / "sweep.json"
    parts = args.parts.split(",")
    for part in parts:
        if part not in ("ice40", "ecp5", "scaling"):
            raise SystemExit(f"--parts: {part!r} is not a part; allowed: ice40, ecp5, scaling")
    for part in parts:
        value = board_part(part, args.workers) if part != "scaling" else scaling_part()
        # read again: another part may have been written meanwhile by another run
        res = json.loads(path.read_text()) if path.exists() else {}
        res[part] = value
        path.write_text(json.dumps(res, indent=2) + "\n")
        (RESULTS / "sweep.md").write_text(markdown(res))
    print(markdown(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())

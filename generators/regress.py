"""`tessera regress`: the cocotb + Verilator regression of one core config."""

import json
import pathlib
import tempfile
import time

from tessera.generators.generate import generate_core


__all__ = ["default_cases", "run_regression", "REFERENCE_GEMM"]

#: The reference GEMM of `tessera report` (M, N, K).
REFERENCE_GEMM = (64, 64, 64)


def default_cases(cfg, *, quick=False):
    """GEMM cases for a core: ragged shapes, K past the scratchpads, extremes, zeros, reference.

    Shapes are derived from the geometry so every config gets M and N that are not multiples of
    the array, a K larger than scratchpads A/B hold (split into accumulating RUNs on cores that
    accumulate), the extreme operand values and all-zero operands.
    """
    R, C = cfg.rows, cfg.cols
    da, db = cfg.memory.a_depth, cfg.memory.b_depth
    # K past the scratchpads: split into accumulating RUNs (every kind with a combiner).
    long_k = min(da, db) * 2 + 3 if cfg.pe.combiner() is not None else min(da, db)
    cases = [
        ("one", 1, 1, 1, "random"),
        ("tile", R, C, 8, "random"),
        ("ragged", R + 1, 2 * C + 3, 5, "random"),
        ("ragged_k17", max(1, 2 * R - 1), C + 1, 17, "random"),
        ("extremes", 2 * R + 1, C + 2, 33, "extremes"),
        ("zeros_a", R, C + 1, 9, "zeros_a"),
        ("zeros_b", R + 2, C, 9, "zeros_b"),
        ("relu", 3 * R, 2 * C, 40, "relu"),
        ("long_k_min", R, C, long_k, "min"),
        ("long_k", R + 1, C - 1 if C > 1 else 1, long_k, "random"),
        ("reference_64", *REFERENCE_GEMM, "random"),
    ]
    if quick:
        keep = {"one", "ragged", "extremes", "zeros_a", "long_k_min", "long_k", "reference_64"}
        cases = [c for c in cases if c[0] in keep]
    modes = cfg.pe.regress_modes()
    out = []
    for mode in modes:
        suffix = "" if mode is None or len(modes) == 1 else f"@{mode}"
        for i, (n, m, nn, k, kind) in enumerate(cases):
            case = {"name": n + suffix, "m": m, "n": nn, "k": k, "kind": kind,
                    "seed": 1000 + i}
            if mode is not None:
                case["mode"] = mode
            out.append(case)
    return out


def run_regression(cfg, *, out_dir=None, build_root="build/sim", waves=False, quick=False,
                   junit=None, progress=print, test_filter=None, cases=None):
    """Generate the core, run the cocotb regression on Verilator, return a summary dict."""
    from tessera.sim.runner import run_cocotb
    t0 = time.monotonic()
    out_dir = pathlib.Path(out_dir or f"build/regress/{cfg.core.name}-{cfg.digest()}")
    gen_dir = out_dir / "rtl"
    progress(f"[regress] generating {cfg.core.name} ({cfg.rows}x{cfg.cols} {cfg.pe.name})")
    manifest = generate_core(cfg, gen_dir)
    t_gen = time.monotonic() - t0
    cases = default_cases(cfg, quick=quick) if cases is None else cases
    if not cases:
        raise ValueError("regression: no GEMM cases given")
    plan = {"config": cfg.to_dict(), "cases": cases, "poll_cycles": 64}
    out_dir.mkdir(parents=True, exist_ok=True)
    plan_path = out_dir / "plan.json"
    plan_path.write_text(json.dumps(plan, indent=1))
    results_path = pathlib.Path(tempfile.mkstemp(prefix="results-", suffix=".jsonl",
                                                 dir=out_dir)[1])
    progress(f"[regress] {len(cases)} GEMM cases + info/back-pressure/malformed-command tests")
    res = run_cocotb(verilog=[gen_dir / manifest["verilog"]], top=manifest["top"],
                     test_module="tessera.tb.core_cocotb", build_root=pathlib.Path(build_root),
                     waves=waves, results_xml=junit or (out_dir / "results.xml"),
                     extra_env={"TESSERA_PLAN": str(plan_path.resolve()),
                                "TESSERA_RESULTS": str(results_path.resolve())},
                     test_filter=test_filter, progress=progress)
    measurements = [json.loads(line) for line in results_path.read_text().splitlines() if line]
    results_path.unlink()
    summary = {
        "config": cfg.core.name,
        "config_digest": cfg.digest(),
        "passed": res.passed, "failed": res.failed, "skipped": res.skipped,
        "ok": res.ok,
        "tests": [{"name": t.name, "status": t.status, "seconds": round(t.seconds, 3),
                   "message": t.message} for t in res.tests],
        "gemms": measurements,
        "junit": str(res.results_xml),
        "waves": str(res.waves) if res.waves else None,
        "rebuilt": res.rebuilt,
        "generate_seconds": round(t_gen, 2),
        "build_seconds": round(res.build_seconds, 2),
        "wall_seconds": round(time.monotonic() - t0, 2),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary

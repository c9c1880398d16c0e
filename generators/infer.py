"""`tessera infer`: a network compiled for a core, run image by image on its golden model or its
RTL, with accuracy, per-layer cycles and link bytes.

MODEL is an ONNX file (a float model is quantized for the core's PE kind from the data's
calibration images, `tessera.sim.ptq`; an int8 QDQ model is taken as it is,
`tessera.sim.onnx_import.load_qdq`), a quantized-network file (``.npz``, `tessera.sim.qnet`),
or one of the built-in digits networks (``digits-mlp``, ``digits-cnn``: trained on the spot,
deterministically, `tessera.sim.digits`).
"""

import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np


__all__ = ["BUILTIN_MODELS", "load_data", "compile_model", "infer", "format_table",
           "InferError"]

BUILTIN_MODELS = ("digits-mlp", "digits-cnn")


class InferError(ValueError):
    """A user error of `tessera infer` (one line)."""


def load_data(spec):
    """``"digits"`` or an ``.npz`` with ``x`` (N x image shape, float), ``y`` (labels,
    optional) and ``x_calib`` (calibration images, optional: ``x`` is used). Returns
    (calibration images, test images, labels or None)."""
    if spec == "digits":
        from tessera.sim.digits import load_split
        x_tr, _, x_te, y_te = load_split()
        return x_tr, x_te, y_te
    path = Path(spec)
    if path.suffix != ".npz":
        raise InferError(f"--data: {spec!r} is not 'digits' or an .npz file")
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InferError(f"--data: {spec}: {e}") from None
    if "x" not in z:
        raise InferError(f"--data: {spec} has no array 'x'; allowed keys: x (images), y "
                         f"(labels), x_calib (calibration images)")
    x = np.asarray(z["x"], dtype=np.float32)
    y = np.asarray(z["y"]).astype(np.int64) if "y" in z else None
    if y is not None and len(y) != len(x):
        raise InferError(f"--data: {spec}: {len(x)} images but {len(y)} labels")
    calib = np.asarray(z["x_calib"], dtype=np.float32) if "x_calib" in z else x
    return calib, x, y


def _builtin(name):
    from tessera.sim import digits
    from tessera.sim.ptq import FloatModel
    net = digits.train_mlp() if name == "digits-mlp" else digits.train_cnn()
    return FloatModel.from_net(net)


def compile_model(model, cfg, calib, *, method=None, percentile=None, precisions=None,
                  threshold=None):
    """(`QNet`, float model or None, how it was made) of MODEL for ``cfg``'s PE kind."""
    from tessera.sim import onnx_import, qnet
    from tessera.sim.ptq import quantize
    options = {"method": method, "percentile": percentile, "precisions": precisions,
               "threshold": threshold}
    options = {k: v for k, v in options.items() if v is not None}
    fm = None
    if model in BUILTIN_MODELS:
        fm, how = _builtin(model), "trained float model, quantized by tessera"
    else:
        path = Path(model)
        if not path.exists():
            raise InferError(f"MODEL: {model!r} is not a file; allowed: an .onnx or .npz "
                             f"file, or {', '.join(BUILTIN_MODELS)}")
        if path.suffix == ".npz":
            if options:
                raise InferError(f"--{next(iter(options))}: a quantized network (.npz) is "
                                 f"already quantized")
            q = qnet.load(path)
            q.check_core(cfg)
            return q, None, "quantized network file"
        if path.suffix != ".onnx":
            raise InferError(f"MODEL: {model!r}: allowed: an .onnx or .npz file, or "
                             f"{', '.join(BUILTIN_MODELS)}")
        if onnx_import.is_qdq(path):
            if options:
                raise InferError(f"--{next(iter(options))}: a QDQ model is already quantized")
            q = onnx_import.load_qdq(path, cfg.pe)
            q.check_core(cfg)
            return q, None, "int8 QDQ model (scales from the model)"
        fm, how = onnx_import.load_float(path), "float ONNX model, quantized by tessera"
    if tuple(fm.input_shape) != tuple(np.shape(calib)[1:]):
        raise InferError(f"--data: images of shape {tuple(np.shape(calib)[1:])}; the model "
                         f"takes {tuple(fm.input_shape)}")
    q = quantize(fm, cfg.pe, calib, **{**cfg.engine.ptq_options(), **options})
    q.check_core(cfg)
    return q, fm, how


class _Sim:
    """The core behind a driver: the golden model or the Verilator RTL."""

    def __init__(self, cfg, sim, progress):
        self.cfg, self.sim, self.core = cfg, sim, None
        if sim == "golden":
            from tessera.sim.core import GoldenCore, GoldenTransport
            self.transport = GoldenTransport(GoldenCore(cfg))
        elif sim == "verilator":
            from tessera.sim.vsim import VerilatorCore
            self.core = VerilatorCore(cfg, progress=progress)       # starts the harness
            self.transport = self.core.transport
        else:
            raise InferError(f"--sim: {sim!r}; allowed: golden, verilator")

    def cycles(self):
        return self.core.cycles if self.core is not None else None

    def close(self):
        if self.core is not None:
            self.core.close()


def infer(cfg, q, x, y=None, *, sim="golden", batch=50, images=None, fm=None,
          progress=None, sim_progress=None):
    """Run `QNet` ``q`` on images ``x`` (first ``images``) on ``cfg``'s core; returns the
    result dict (see `format_table` and docs/models.md)."""
    from tessera.sim.driver import TesseraDriver
    from tessera.sim.layers import describe
    from tessera.sim.qnet import k_splits_of, reference_network, run_network
    n = len(x) if images is None else min(images, len(x))
    x = np.asarray(x[:n])
    y = None if y is None else np.asarray(y[:n])
    s = _Sim(cfg, sim, sim_progress)
    try:
        # The RTL counts cycles by cause (COUNTERS); the golden model has no clock between
        # commands, so its idle time would say nothing.
        drv = TesseraDriver(s.transport, cfg,
                            count_causes=sim == "verilator" and cfg.core.counters)

        async def go():
            await drv.connect()
            return await run_network(drv, q, x, batch=batch, progress=progress)
        t0 = time.perf_counter()
        res = asyncio.run(go())
        wall = time.perf_counter() - t0
        sim_cycles = s.cycles()
    finally:
        s.close()
    ref = reference_network(q, cfg.pe, x, k_splits=k_splits_of(res))
    same = np.array([np.array_equal(a, b) for a, b in zip(res.outputs, ref.outputs)])
    layers, tot = [], {"cycles": 0, "ideal": 0.0, "runs": 0, "out": 0, "in": 0}
    for r in res.records:
        st = r.stats
        row = {"index": r.index, "layer": describe(r.layer), "type": r.layer.type,
               "output": list(r.out_shape[1:]), "where": "core" if st else "host",
               "epilogue": r.epilogue}
        if st:
            gem = st[0].gemms
            row.update({"gemms": [list(g) for g in gem],
                        "runs": r.total("runs"), "cycles": r.total("cycles"),
                        "ideal_cycles": r.total("ideal_cycles"),
                        "bytes_to_core": r.total("bytes_out"),
                        "bytes_from_core": r.total("bytes_in"), "k_split": st[-1].k_split})
            row["utilization"] = row["ideal_cycles"] / row["cycles"] if row["cycles"] else None
            if st[0].counters is not None:
                c = st[0].counters
                for more in st[1:]:
                    c = c + more.counters
                row["counters"] = c.as_dict()
            for k, key in (("cycles", "cycles"), ("ideal", "ideal_cycles"), ("runs", "runs"),
                           ("out", "bytes_to_core"), ("in", "bytes_from_core")):
                tot[k] += row[key]
        layers.append(row)
    out = {"model": q.name, "core": cfg.core.name, "array": f"{cfg.rows}x{cfg.cols}",
           "pe": cfg.pe.name, "engine": cfg.engine.name, "sim": sim, "images": int(n),
           "batch": int(batch), "quantization": q.meta,
           "accuracy": None if y is None else float(np.mean(res.classes == y)),
           "reference_accuracy": None if y is None else float(np.mean(ref.classes == y)),
           "float_accuracy": None if (y is None or fm is None) else fm.accuracy(x, y),
           "equal_to_reference": int(same.sum()),
           "classes": res.classes.tolist(),
           "layers": layers,
           "cycles_per_image": tot["cycles"] / n, "ideal_cycles_per_image": tot["ideal"] / n,
           "utilization": tot["ideal"] / tot["cycles"] if tot["cycles"] else None,
           "runs": tot["runs"], "bytes_to_core_per_image": tot["out"] / n,
           "bytes_from_core_per_image": tot["in"] / n, "wall_s": wall,
           "images_per_s": n / wall if wall else None}
    if sim_cycles is not None:
        out["simulated_cycles"] = int(sim_cycles)
        out["simulated_cycles_per_s"] = sim_cycles / wall if wall else None
    return out


def _fmt_int(v):
    return "-" if v is None else f"{round(v):,}"


def format_table(r):
    """The human-readable report of an `infer` result dict."""
    lines = [f"{r['model']} on {r['core']} ({r['array']} {r['pe']}, {r['engine']} engine, "
             f"{r['sim']}): {r['images']} images, batch {r['batch']}",
             f"{'#':>2}  {'layer':<26} {'output':<10} {'mapping':<20} {'runs':>5} "
             f"{'cycles':>10} {'ideal':>10} {'util':>6}  {'epilogue':<10} {'bytes->':>9} "
             f"{'<-bytes':>9}"]
    n = r["images"]
    for row in r["layers"]:
        shape = "x".join(str(d) for d in row["output"])
        if row["where"] == "host":
            lines.append(f"{row['index']:>2}  {row['layer']:<26} {shape:<10} {'host':<20}")
            continue
        g = row["gemms"]
        mp = "GEMM " + "{}x{}x{}".format(*g[0]) + (f" x{len(g)}" if len(g) > 1 else "")
        util = f"{100 * row['utilization']:5.1f}%" if row["utilization"] else "    -"
        lines.append(f"{row['index']:>2}  {row['layer']:<26} {shape:<10} {mp:<20} "
                     f"{row['runs']:>5} {_fmt_int(row['cycles'] / n):>10} "
                     f"{_fmt_int(row['ideal_cycles'] / n):>10} {util}  {row['epilogue']:<10} "
                     f"{_fmt_int(row['bytes_to_core'] / n):>9} "
                     f"{_fmt_int(row['bytes_from_core'] / n):>9}")
    lines.append("(cycles, ideal and bytes per image; runs in all; mapping: the first GEMM, "
                 "M x N x K, per batch)")
    util = r["utilization"]
    lines.append(f"cycles per image: {_fmt_int(r['cycles_per_image'])} (ideal "
                 f"{_fmt_int(r['ideal_cycles_per_image'])}, utilization "
                 f"{100 * util:.1f}%)" if util else "cycles per image: -")
    lines.append(f"host link per image: {_fmt_int(r['bytes_to_core_per_image'])} bytes to the "
                 f"core, {_fmt_int(r['bytes_from_core_per_image'])} bytes back")
    lines += format_breakdown(r)
    if r["accuracy"] is not None:
        acc = f"accuracy: {100 * r['accuracy']:.2f} % ({round(r['accuracy'] * n)}/{n})"
        if r["float_accuracy"] is not None:
            acc += f"; float model {100 * r['float_accuracy']:.2f} %"
        lines.append(acc)
    lines.append(f"outputs equal to the independent reference on {r['equal_to_reference']}/{n} "
                 f"images")
    speed = f"wall {r['wall_s']:.1f} s ({r['images_per_s']:.1f} images/s"
    if r.get("simulated_cycles_per_s"):
        speed += f", {r['simulated_cycles_per_s'] / 1e6:.2f} M simulated cycles/s"
    lines.append(speed + ")")
    return "\n".join(lines)


def format_breakdown(r):
    """Lines of the per-layer cycles-by-cause table (the core's COUNTERS), or none when the
    run did not count them."""
    from tessera.sim.driver import Counters, breakdown_lines
    rows = [(x["index"], x["layer"], Counters(**x["counters"])) for x in r["layers"]
            if x.get("counters")]
    return breakdown_lines(rows, r["images"])


def plot(r, path):
    """Cycles per image and utilization per on-chip layer."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [x for x in r["layers"] if x["where"] == "core"]
    n = r["images"]
    names = [f"{x['index']}: {x['layer']}" for x in rows]
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(rows)), 4))
    pos = np.arange(len(rows))
    ax.bar(pos - 0.2, [x["cycles"] / n for x in rows], 0.4, label="cycles")
    ax.bar(pos + 0.2, [x["ideal_cycles"] / n for x in rows], 0.4, label="ideal")
    ax.set_xticks(pos, names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("cycles per image")
    ax.set_title(f"{r['model']} on {r['core']} ({r['sim']})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _progress_line(done, total):
    print(f"\r[infer] images {done}/{total}", end="" if done < total else "\n",
          file=sys.stderr, flush=True)


def run_cli(args, cfg):
    """`tessera infer` (the CLI wires the arguments; errors are `InferError` or the
    library's one-line errors)."""
    calib, x, y = load_data(args.data)
    if args.calib is not None:
        calib = calib[:args.calib]
    say = (lambda m: print(m, file=sys.stderr))
    say(f"[infer] compiling {args.model} for {cfg.core.name} ({cfg.pe.name})")
    q, fm, how = compile_model(args.model, cfg, calib, method=args.method,
                               percentile=args.percentile, precisions=args.precisions,
                               threshold=getattr(args, "threshold", None))
    if args.save:
        q.save(args.save)
        say(f"[infer] quantized network written to {args.save}")
    r = infer(cfg, q, x, y, sim=args.sim, batch=args.batch, images=args.images, fm=fm,
              progress=_progress_line, sim_progress=say)
    r["compiled_from"] = how
    if args.plot:
        plot(r, args.plot)
    if args.json:
        print(json.dumps(r, indent=1))
    else:
        print(format_table(r))
        if args.plot:
            print(f"plot: {args.plot}")
    return 0

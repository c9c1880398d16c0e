"""Post-training quantization: a float network and a calibration set in, a `QNet` out.

The toolkit (``docs/models.md`` shows it end to end):

* `FloatModel`: the float network as the project's layers (`tessera.sim.layers`) with float
  weights; `FloatModel.forward` runs it in float64 NumPy (direct convolution).
  `tessera.sim.onnx_import.load_float` makes one from an ONNX file.
* `calibrate(model, x)`: runs the calibration images and records, per on-chip layer, the
  statistics of its input and of its output after the activation that follows it
  (`Relu`/`Clip` are fused into the layer's epilogue).
* Clipping rules for a tensor's range (`clip_range`): ``"max"`` (the largest magnitude),
  ``"percentile"`` (that percentile of the magnitudes, default 99.99) and ``"sawb"``
  (Statistics-Aware Weight Binning, seed 003: ``alpha = c1 * sqrt(E[x^2]) - c2 * E[|x|]``,
  the coefficients fitted per bit width by the seed's procedure, `sawb_coefficients`).
* Per-output-channel symmetric weight quantization (`symmetric_levels`).
* `quantize(model, pe, calib_x, **options)`: asks the PE kind for its recipe
  (`PEKind.ptq_recipe()`, a class in ``tessera.sim.ptq_*``) and runs it. A recipe turns the
  calibrated blocks into a `QNet` for its number formats.
"""

from dataclasses import dataclass, field
import functools

import numpy as np

from tessera.sim.layers import (CHIP_TYPES, Clip, Conv2d, Dense, LayerError, Relu, apply_host,
                                conv2d_direct)


__all__ = ["FloatModel", "FStep", "Block", "Stats", "calibrate", "blocks", "clip_range",
           "sawb_coefficients", "symmetric_levels", "quantize", "METHODS", "Recipe"]

#: Range rules for activations (and weights where a recipe clips them).
METHODS = ("max", "percentile", "sawb")


@dataclass
class FStep:
    """One float layer: ``layer`` with float ``w`` (Dense in x out, Conv2d OIHW) and ``b``."""
    layer: object
    w: np.ndarray = None
    b: np.ndarray = None


@dataclass
class FloatModel:
    """A float network: ``steps`` (`FStep`), one image's ``input_shape``, a ``name``."""
    steps: list
    input_shape: tuple
    name: str = "model"

    @classmethod
    def from_net(cls, net):
        """From a `tessera.sim.digits.FloatNet` (layers, weights, biases, input_shape)."""
        return cls([FStep(layer, w, b) for layer, w, b in
                    zip(net.layers, net.weights, net.biases)], tuple(net.input_shape), net.name)

    def forward(self, x, *, record=None):
        """Logits of float images ``x`` (float64). ``record``: a list that receives each
        step's output."""
        y = np.asarray(x, dtype=np.float64)
        for st in self.steps:
            y = float_step(st, y)
            if record is not None:
                record.append(y)
        return y

    def accuracy(self, x, labels):
        return float(np.mean(np.argmax(self.forward(x), axis=1) == np.asarray(labels)))


def float_step(st, y):
    if isinstance(st.layer, Dense):
        out = y @ np.asarray(st.w, dtype=np.float64)
        return out + np.asarray(st.b, dtype=np.float64) if st.b is not None else out
    if isinstance(st.layer, Conv2d):
        out = conv2d_direct(y, np.asarray(st.w, dtype=np.float64), st.layer)
        return out + np.asarray(st.b, dtype=np.float64).reshape(1, -1, 1, 1) \
            if st.b is not None else out
    return np.asarray(apply_host(st.layer, y), dtype=np.float64)


class Stats:
    """A tensor's calibration statistics: exact min and max, moments, and a deterministic
    subsample (at most ``keep`` values) for percentiles."""

    def __init__(self, keep=200_000):
        self.keep = keep
        self.lo, self.hi = np.inf, -np.inf
        self.n, self.s_abs, self.s_sq = 0, 0.0, 0.0
        self._parts = []

    def add(self, x):
        x = np.asarray(x, dtype=np.float64).ravel()
        if not x.size:
            return
        self.lo, self.hi = min(self.lo, x.min()), max(self.hi, x.max())
        self.n += x.size
        self.s_abs += float(np.abs(x).sum())
        self.s_sq += float((x * x).sum())
        step = max(1, x.size // self.keep)
        self._parts.append(x[::step])

    @functools.cached_property
    def sample(self):
        s = np.concatenate(self._parts) if self._parts else np.zeros(1)
        step = max(1, s.size // self.keep)
        return s[::step]

    @property
    def mean_abs(self):
        return self.s_abs / max(self.n, 1)

    @property
    def rms(self):
        return float(np.sqrt(self.s_sq / max(self.n, 1)))


@functools.lru_cache(maxsize=None)
def sawb_coefficients(bits):
    """SAWB's ``(c1, c2)`` for ``bits``-bit symmetric uniform quantization, fitted by the
    seed's procedure (seed 003, "Statistics Aware Weight Binning"): six distributions
    (Gaussian, uniform, triangular, Laplace, logistic, von Mises), for each the clip
    ``alpha*`` with the smallest quantization MSE (a fine sweep), then a least-squares fit
    ``alpha* = c1 * sqrt(E[w^2]) - c2 * E[|w|]``. Deterministic (fixed seed)."""
    if not 2 <= bits <= 16:
        raise ValueError(f"sawb bits: {bits} is out of range; allowed: 2..16")
    rng = np.random.default_rng(3)
    n = 50_000
    dists = [rng.standard_normal(n), rng.uniform(-1, 1, n), rng.triangular(-1, 0, 1, n),
             rng.laplace(0, 1, n), rng.logistic(0, 1, n), rng.vonmises(0, 2, n)]
    rows, target = [], []
    levels = (1 << (bits - 1)) - 1
    for w in dists:
        a = np.abs(w)
        grid = np.linspace(0.02, 1.0, 246) * a.max()
        best, best_mse = None, np.inf
        for alpha in grid:
            q = np.clip(np.round(w / alpha * levels), -levels, levels) * alpha / levels
            mse = float(np.mean((w - q) ** 2))
            if mse < best_mse:
                best, best_mse = alpha, mse
        rows.append([np.sqrt(np.mean(w * w)), -a.mean()])
        target.append(best)
    (c1, c2), *_ = np.linalg.lstsq(np.array(rows), np.array(target), rcond=None)
    return float(c1), float(c2)


def clip_range(stats, method, bits, *, percentile=99.99):
    """The clipping magnitude of a tensor for ``bits``-bit quantization by ``method``
    (`METHODS`), never above its largest magnitude and never zero."""
    top = max(abs(stats.lo), abs(stats.hi))
    if method == "max":
        alpha = top
    elif method == "percentile":
        if not 0 < percentile <= 100:
            raise LayerError(f"percentile: {percentile} is out of range; allowed: (0, 100]")
        alpha = float(np.percentile(np.abs(stats.sample), percentile))
    elif method == "sawb":
        c1, c2 = sawb_coefficients(min(max(bits, 2), 16))
        alpha = c1 * stats.rms - c2 * stats.mean_abs
    else:
        raise LayerError(f"method: {method!r} is unknown; allowed: {', '.join(METHODS)}")
    alpha = min(alpha, top) if top > 0 else 1.0
    return alpha if alpha > 0 else (top or 1.0)


def symmetric_levels(w, bits, axis, *, method="max", percentile=99.99):
    """Symmetric per-channel quantization of float weights ``w`` (channel axis ``axis``) to
    ``bits``-bit signed levels ``-(2**(bits-1) - 1) .. 2**(bits-1) - 1``; returns (levels
    int64, scales float64 per channel). A channel of zeros gets scale 1."""
    w = np.asarray(w, dtype=np.float64)
    top = (1 << (bits - 1)) - 1
    wm = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    scales = np.empty(w.shape[axis])
    for c, row in enumerate(wm):
        st = Stats()
        st.add(row)
        alpha = clip_range(st, method, bits, percentile=percentile) if np.any(row) else top
        scales[c] = alpha / top
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scales.reshape(shape)), -top, top).astype(np.int64)
    return q, scales


@dataclass
class Block:
    """An on-chip layer with the activation fused after it (``act``: None, ``"relu"`` or
    ``("clip", lo, hi)``), or a host layer. ``x_stats``/``y_stats``: calibration statistics
    of its input and of its output after the activation."""
    step: FStep
    act: object = None
    x_stats: Stats = field(default_factory=Stats)
    y_stats: Stats = field(default_factory=Stats)

    @property
    def layer(self):
        return self.step.layer

    @property
    def on_chip(self):
        return self.layer.type in CHIP_TYPES


def blocks(model):
    """The model as `Block`s: each `Dense`/`Conv2d` with the `Relu`/`Clip` right after it."""
    out, steps, i = [], model.steps, 0
    while i < len(steps):
        st = steps[i]
        b = Block(st)
        if st.layer.type in CHIP_TYPES and i + 1 < len(steps) and \
                isinstance(steps[i + 1].layer, (Relu, Clip)):
            nxt = steps[i + 1].layer
            b.act = "relu" if isinstance(nxt, Relu) else ("clip", nxt.lo, nxt.hi)
            i += 1
        out.append(b)
        i += 1
    return out


def calibrate(model, x, *, batch=256):
    """`Block`s of ``model`` with the statistics of calibration images ``x``."""
    bl = blocks(model)
    for s in range(0, len(x), batch):
        y = np.asarray(x[s:s + batch], dtype=np.float64)
        for b in bl:
            b.x_stats.add(y)
            y = float_step(b.step, y)
            if b.act == "relu":
                y = np.maximum(y, 0)
            elif b.act is not None:
                y = np.clip(y, b.act[1], b.act[2])
            b.y_stats.add(y)
    return bl


class Recipe:
    """Base of a PE kind's quantization recipe. ``options`` are checked by `OPTIONS` (name ->
    default); `build` turns calibrated blocks into a `QNet`."""
    name = ""
    OPTIONS = {"method": "max", "percentile": 99.99}

    def __init__(self, pe, **options):
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            raise LayerError(f"quantize: option {unknown[0]!r} does not apply to pe.kind "
                             f"{pe.name!r}; allowed: {', '.join(sorted(self.OPTIONS))}")
        self.pe = pe
        self.opts = {**self.OPTIONS, **{k: v for k, v in options.items() if v is not None}}
        if self.opts.get("method") not in METHODS:
            raise LayerError(f"quantize: method {self.opts.get('method')!r} is unknown; "
                             f"allowed: {', '.join(METHODS)}")

    def build(self, model, blocks):
        """A `QNet` from the calibrated ``blocks``; a recipe that needs the calibration images
        themselves (bias correction) adds a keyword parameter ``calib_x``."""
        raise NotImplementedError


def quantize(model, pe, calib_x, **options):
    """Quantize float ``model`` for PE kind ``pe`` (``cfg.pe``) from calibration images
    ``calib_x``; ``options`` are the recipe's (`Recipe.OPTIONS`). Returns a `QNet`."""
    make = getattr(pe, "ptq_recipe", None)
    recipe_cls = make() if make else None
    if recipe_cls is None:
        raise LayerError(f"quantize: pe.kind {pe.name!r} has no quantization recipe")
    recipe = recipe_cls(pe, **options)
    for i, st in enumerate(model.steps):
        if st.layer.type in CHIP_TYPES and st.w is None:
            raise LayerError(f"layer {i} ({st.layer.type}) has no weights")
    import inspect
    extra = {"calib_x": calib_x} if "calib_x" in inspect.signature(recipe.build).parameters \
        else {}                  # recipes that correct biases on the calibration images
    return recipe.build(model, calibrate(model, calib_x), **extra)

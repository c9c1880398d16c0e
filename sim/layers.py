"""Layers as data: the vocabulary the host, the engines and the regression share.

A layer is a frozen dataclass that checks its own parameters and knows its shapes. Tensors are
NCHW (activations) and OIHW (convolution weights, ``I`` = input channels per group), as in
ONNX; a `Dense` layer computes ``y = x @ w (+ bias)`` with ``w`` of shape
``in_features x out_features``.

Engines run `Dense` and `Conv2d` on chip (`Engine.layer_types`); pooling, activations and
`Flatten` run on the host (`apply_host`) in this version.

The references here are the **independent** side of the verification ladder: `conv2d_direct`
is a direct convolution (one tensor contraction per kernel offset over the zero-padded input, exact
integers or Python objects), and `reference_codes` builds each output's dot product by
indexing the padded input directly, output pixel by output pixel, never through the im2col
code of the mapper (`tessera.sim.lowering`).
"""

import dataclasses
from dataclasses import dataclass

import numpy as np


__all__ = ["Dense", "Conv2d", "MaxPool2d", "AvgPool2d", "Relu", "Clip", "Flatten", "Pad2d",
           "LAYER_TYPES", "CHIP_TYPES", "layer_from_dict", "describe", "apply_host",
           "conv2d_direct",
           "reference_codes", "weight_columns", "LayerError"]


class LayerError(ValueError):
    """A layer parameter or a tensor shape is impossible; the message names it."""


def _pair(name, value, lo, hi):
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise LayerError(f"{name}: {value!r} must be an integer or a pair of integers")
        pair = tuple(value)
    else:
        pair = (value, value)
    for v in pair:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise LayerError(f"{name}: {value!r} is not an integer; allowed: {lo}..{hi}")
        if not lo <= v <= hi:
            raise LayerError(f"{name}: {value!r} is out of range; allowed: {lo}..{hi}")
    return tuple(int(v) for v in pair)


def _count(name, value, lo=1, hi=1 << 20):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise LayerError(f"{name}: {value!r} is not an integer; allowed: {lo}..{hi}")
    if not lo <= value <= hi:
        raise LayerError(f"{name}: {value!r} is out of range; allowed: {lo}..{hi}")
    return int(value)


class _Layer:
    type = ""

    def to_dict(self):
        d = {"type": self.type}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            d[f.name] = list(v) if isinstance(v, tuple) else v
        return d

    def _check_input(self, shape, ndim, what):
        if len(shape) != ndim:
            raise LayerError(f"{self.type}: input shape {tuple(shape)} must be {what}")


@dataclass(frozen=True)
class Dense(_Layer):
    """Fully connected: ``y = x @ w + bias``; x: N x in_features, w: in x out."""
    in_features: int
    out_features: int
    bias: bool = False
    type = "Dense"

    def __post_init__(self):
        _count("Dense.in_features", self.in_features)
        _count("Dense.out_features", self.out_features)

    @property
    def weight_shape(self):
        return (self.in_features, self.out_features)

    def out_shape(self, shape):
        self._check_input(shape, 2, f"N x {self.in_features}")
        if shape[1] != self.in_features:
            raise LayerError(f"Dense: input shape {tuple(shape)} must be N x {self.in_features}")
        return (shape[0], self.out_features)

    def macs(self, shape):
        return shape[0] * self.in_features * self.out_features

    def gemm_k(self):
        return self.in_features


@dataclass(frozen=True)
class Conv2d(_Layer):
    """2-D convolution, zero padding, ``groups`` 1 or ``in_channels`` (depthwise, with
    ``out_channels`` a multiple of ``in_channels``). Kernel 1..7 and stride 1..4 per
    direction; padding 0..kernel-1 per direction (top = bottom, left = right)."""
    in_channels: int
    out_channels: int
    kernel: tuple = (3, 3)
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    groups: int = 1
    bias: bool = False
    type = "Conv2d"

    def __post_init__(self):
        _count("Conv2d.in_channels", self.in_channels, 1, 65535)
        _count("Conv2d.out_channels", self.out_channels, 1, 65535)
        k = _pair("Conv2d.kernel", self.kernel, 1, 7)
        s = _pair("Conv2d.stride", self.stride, 1, 4)
        p = _pair("Conv2d.padding", self.padding, 0, 6)
        for d in range(2):
            if p[d] >= k[d]:
                raise LayerError(f"Conv2d.padding: {self.padding!r} is out of range for kernel "
                                 f"{k}; allowed: 0..kernel-1 per direction")
        object.__setattr__(self, "kernel", k)
        object.__setattr__(self, "stride", s)
        object.__setattr__(self, "padding", p)
        g = _count("Conv2d.groups", self.groups, 1, 65535)
        if g not in (1, self.in_channels):
            raise LayerError(f"Conv2d.groups: {g} is not supported; allowed: 1 or in_channels "
                             f"({self.in_channels}, depthwise)")
        if self.out_channels % g:
            raise LayerError(f"Conv2d.out_channels: {self.out_channels} is not a multiple of "
                             f"groups ({g}); allowed: multiples of {g}")

    @property
    def depthwise(self):
        return self.groups > 1

    @property
    def weight_shape(self):
        return (self.out_channels, self.in_channels // self.groups, *self.kernel)

    def out_hw(self, h, w):
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        if oh < 1 or ow < 1:
            raise LayerError(f"Conv2d: input {h}x{w} is smaller than kernel {self.kernel} with "
                             f"padding {self.padding}")
        return oh, ow

    def out_shape(self, shape):
        self._check_input(shape, 4, f"N x {self.in_channels} x H x W")
        if shape[1] != self.in_channels:
            raise LayerError(f"Conv2d: input shape {tuple(shape)} must be "
                             f"N x {self.in_channels} x H x W")
        return (shape[0], self.out_channels, *self.out_hw(shape[2], shape[3]))

    def macs(self, shape):
        n, o, oh, ow = self.out_shape(shape)
        return n * o * oh * ow * self.gemm_k()

    def gemm_k(self):
        """The dot-product length of one output: in_channels/groups x kh x kw."""
        return self.in_channels // self.groups * self.kernel[0] * self.kernel[1]


@dataclass(frozen=True)
class _Pool(_Layer):
    kernel: tuple = (2, 2)
    stride: tuple = None
    padding: tuple = (0, 0)

    def __post_init__(self):
        k = _pair(f"{self.type}.kernel", self.kernel, 1, 16)
        s = _pair(f"{self.type}.stride", self.kernel if self.stride is None else self.stride,
                  1, 16)
        p = _pair(f"{self.type}.padding", self.padding, 0, 8)
        if p[0] >= k[0] or p[1] >= k[1]:
            raise LayerError(f"{self.type}.padding: {self.padding!r} must be smaller than the "
                             f"kernel {k}")
        object.__setattr__(self, "kernel", k)
        object.__setattr__(self, "stride", s)
        object.__setattr__(self, "padding", p)

    def out_shape(self, shape):
        self._check_input(shape, 4, "N x C x H x W")
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        oh, ow = (shape[2] + 2 * ph - kh) // sh + 1, (shape[3] + 2 * pw - kw) // sw + 1
        if oh < 1 or ow < 1:
            raise LayerError(f"{self.type}: input {shape[2]}x{shape[3]} is smaller than the "
                             f"kernel {self.kernel}")
        return (shape[0], shape[1], oh, ow)


@dataclass(frozen=True)
class MaxPool2d(_Pool):
    """Max pooling (padding counts as -inf, as in ONNX)."""
    type = "MaxPool2d"


@dataclass(frozen=True)
class AvgPool2d(_Pool):
    """Average pooling over the window's input pixels (padding not counted, ONNX
    ``count_include_pad=0``); the exact mean as float64."""
    type = "AvgPool2d"


@dataclass(frozen=True)
class Relu(_Layer):
    type = "Relu"

    def out_shape(self, shape):
        return tuple(shape)


@dataclass(frozen=True)
class Clip(_Layer):
    """Clamp to ``[lo, hi]`` (ReLU6 is ``Clip(0, 6)``)."""
    lo: float = 0.0
    hi: float = 6.0
    type = "Clip"

    def __post_init__(self):
        if not (np.isfinite(self.lo) and np.isfinite(self.hi)) or self.lo > self.hi:
            raise LayerError(f"Clip: lo {self.lo!r} and hi {self.hi!r} must be finite with "
                             f"lo <= hi")

    def out_shape(self, shape):
        return tuple(shape)


@dataclass(frozen=True)
class Flatten(_Layer):
    """N x ... -> N x (product of the rest), in C order (as ONNX Flatten axis=1)."""
    type = "Flatten"

    def out_shape(self, shape):
        return (shape[0], int(np.prod(shape[1:], dtype=np.int64)))


@dataclass(frozen=True)
class Pad2d(_Layer):
    """Constant padding of H and W (``padding`` top = bottom, left = right) with ``value``:
    a convolution on affine-quantized activations pads with the zero point (the real 0), which
    the core's own zero padding (code 0) is not, so the quantizers put this host layer before
    such a convolution and run the convolution unpadded."""
    padding: tuple = (1, 1)
    value: float = 0.0
    type = "Pad2d"

    def __post_init__(self):
        object.__setattr__(self, "padding", _pair("Pad2d.padding", self.padding, 0, 64))
        if not np.isfinite(self.value):
            raise LayerError(f"Pad2d.value: {self.value!r} must be a finite number")

    def out_shape(self, shape):
        self._check_input(shape, 4, "N x C x H x W")
        ph, pw = self.padding
        return (shape[0], shape[1], shape[2] + 2 * ph, shape[3] + 2 * pw)


_CLASSES = (Dense, Conv2d, MaxPool2d, AvgPool2d, Relu, Clip, Flatten, Pad2d)

#: Every layer type, in INFO code order (code = index + 1).
LAYER_TYPES = tuple(c.type for c in _CLASSES)

#: The layer types an engine may run on chip (the rest run on the host).
CHIP_TYPES = ("Dense", "Conv2d")


def describe(layer):
    """A short label: ``Dense 37->7``, ``Conv2d 3->4 3x3/s1/p1``, ``Conv2d dw 3->3 3x3/s1/p1``."""
    if isinstance(layer, dict):
        layer = layer_from_dict(layer)
    if isinstance(layer, Dense):
        return f"Dense {layer.in_features}->{layer.out_features}"
    if isinstance(layer, Conv2d):
        (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
        s = f"{sh}" if sh == sw else f"{sh}x{sw}"
        p = f"{ph}" if ph == pw else f"{ph}x{pw}"
        dw = " dw" if layer.depthwise else ""
        return f"Conv2d{dw} {layer.in_channels}->{layer.out_channels} {kh}x{kw}/s{s}/p{p}"
    return layer.type


def layer_from_dict(d):
    """The layer `to_dict` described (``{"type": "Conv2d", ...}``)."""
    d = dict(d)
    t = d.pop("type", None)
    for c in _CLASSES:
        if c.type == t:
            try:
                return c(**d)
            except TypeError as e:
                names = [f.name for f in dataclasses.fields(c)]
                raise LayerError(f"{t}: {e}; allowed keys: {', '.join(names)}") from None
    raise LayerError(f"layer type {t!r} is unknown; allowed: {', '.join(LAYER_TYPES)}")


def _pad(x, ph, pw, value=0):
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def apply_host(layer, x):
    """Run a host-side layer (pooling, activation, flatten) on values ``x``."""
    x = np.asarray(x)
    if isinstance(layer, Relu):
        return np.maximum(x, 0)
    if isinstance(layer, Clip):
        return np.clip(x, layer.lo, layer.hi)
    if isinstance(layer, Flatten):
        return x.reshape(layer.out_shape(x.shape))
    if isinstance(layer, Pad2d):
        layer.out_shape(x.shape)
        v = int(layer.value) if np.issubdtype(x.dtype, np.integer) and \
            float(layer.value).is_integer() else layer.value
        return _pad(x, *layer.padding, v)
    if isinstance(layer, _Pool):
        n, c, oh, ow = layer.out_shape(x.shape)
        (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
        xf = x.astype(np.float64)
        if isinstance(layer, MaxPool2d):
            xp = _pad(xf, ph, pw, -np.inf)
            out = np.full((n, c, oh, ow), -np.inf)
            for i in range(kh):
                for j in range(kw):
                    out = np.maximum(out, xp[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw])
            return out.astype(x.dtype) if np.issubdtype(x.dtype, np.integer) else out
        xp = _pad(xf, ph, pw, 0)
        ones = _pad(np.ones((1, 1, x.shape[2], x.shape[3])), ph, pw, 0)
        tot = np.zeros((n, c, oh, ow))
        cnt = np.zeros((1, 1, oh, ow))
        for i in range(kh):
            for j in range(kw):
                tot += xp[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]
                cnt += ones[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]
        return tot / cnt
    raise LayerError(f"{layer.type} does not run on the host")


def conv2d_direct(x, w, layer, bias=None):
    """Direct convolution of values: one contraction over channels per kernel offset over the zero-padded input.

    Exact for integers (``object`` arithmetic when int64 could overflow) and plain float64
    otherwise. ``x``: N x C x H x W, ``w``: O x C/groups x KH x KW; returns N x O x OH x OW.
    """
    x, w = np.asarray(x), np.asarray(w)
    n, o, oh, ow = layer.out_shape(x.shape)
    if w.shape != layer.weight_shape:
        raise LayerError(f"Conv2d: weights of shape {w.shape}, expected {layer.weight_shape}")
    exact = np.issubdtype(x.dtype, np.integer) and np.issubdtype(w.dtype, np.integer)
    if exact:
        big = (np.abs(x.astype(object)).max(initial=0) * np.abs(w.astype(object)).max(initial=0)
               * layer.gemm_k()) >= 1 << 62
        dt = object if big else np.int64
    else:
        dt = np.float64 if x.dtype != object else object
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding

    def cast(a):      # Python ints in object arrays (astype may keep NumPy scalars)
        return np.array(a.tolist(), dtype=object).reshape(a.shape) if dt is object \
            else a.astype(dt)
    xp = cast(_pad(x, ph, pw, 0))
    g = layer.groups
    cg, og = layer.in_channels // g, o // g
    out = np.zeros((n, o, oh, ow), dtype=dt)
    for gi in range(g):
        xs = xp[:, gi * cg:(gi + 1) * cg]
        ws = cast(w[gi * og:(gi + 1) * og])
        for i in range(kh):
            for j in range(kw):
                win = xs[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]
                part = np.tensordot(win, ws[:, :, i, j], axes=([1], [1]))    # n h w o
                out[:, gi * og:(gi + 1) * og] += part.transpose(0, 3, 1, 2)
    if bias is not None:
        out = out + cast(np.asarray(bias)).reshape(1, o, 1, 1)
    return out


def weight_columns(arrays, layer, g):
    """The K x O/groups weight matrix of group ``g`` from the kind's named weight arrays.

    ``arrays["codes"]`` is OIHW (or already the K x O matrix form, K in (c, kh, kw) order,
    used by kinds whose weights carry per-channel side data); other arrays of length O are
    per-output-channel and are cut to the group, the rest pass unchanged.
    """
    o = layer.out_channels if isinstance(layer, Conv2d) else layer.out_features
    og = o // layer.groups if isinstance(layer, Conv2d) else o
    codes = np.asarray(arrays["codes"])
    if codes.ndim == 4:
        mat = codes.reshape(codes.shape[0], -1).T
    elif codes.ndim == 2:
        mat = codes
    else:
        raise LayerError(f"{layer.type}: weight codes of shape {codes.shape}; expected "
                         f"{getattr(layer, 'weight_shape', '')} or K x O")
    out = {"codes": mat[:, g * og:(g + 1) * og]}
    for k, v in arrays.items():
        if k == "codes":
            continue
        v = np.asarray(v)
        out[k] = v[g * og:(g + 1) * og] if v.ndim >= 1 and v.shape[0] == o else v
    return out


def _patches_direct(x, layer, g):
    """Each output pixel's input window, indexed directly from the padded input: a
    (N*OH*OW) x (C/g*KH*KW) array in (c, kh, kw) order. Deliberately plain loops (the
    reference must not share the mapper's vectorized im2col)."""
    n, _, oh, ow = layer.out_shape(x.shape)
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
    cg = layer.in_channels // layer.groups
    h, w = x.shape[2], x.shape[3]
    rows = []
    for b in range(n):
        for y in range(oh):
            for xx in range(ow):
                row = []
                for c in range(g * cg, (g + 1) * cg):
                    for i in range(kh):
                        for j in range(kw):
                            r, s = y * sh + i - ph, xx * sw + j - pw
                            row.append(x[b, c, r, s] if 0 <= r < h and 0 <= s < w else 0)
                rows.append(row)
    return np.array(rows, dtype=x.dtype).reshape(n * oh * ow, cg * kh * kw)


def reference_codes(pe, layer, x_codes, w_codes, *, k_split=None, mode=None):
    """Expected result codes of a `Dense` or `Conv2d` layer on a core of PE kind ``pe``.

    Every output is the kind's reference dot product (`PEKind.reference`, independent of the
    twin) of its input window and its weights, the window taken straight from the padded input
    (`_patches_direct`); returns N x O (Dense) or N x O x OH x OW codes.
    """
    if isinstance(layer, Dense):
        return pe.reference(np.asarray(x_codes), w_codes, k_split=k_split, mode=mode)
    if not isinstance(layer, Conv2d):
        raise LayerError(f"{layer.type} has no on-chip reference")
    x = np.asarray(x_codes, dtype=np.uint64)
    n, o, oh, ow = layer.out_shape(x.shape)
    arrays = pe.operand_arrays(w_codes)
    og = o // layer.groups
    out = np.zeros((n, o, oh, ow), dtype=np.uint64)
    for g in range(layer.groups):
        pat = _patches_direct(x, layer, g)
        wg = pe.operand_from_arrays(weight_columns(arrays, layer, g))
        res = np.asarray(pe.reference(pat, wg, k_split=k_split, mode=mode), dtype=np.uint64)
        out[:, g * og:(g + 1) * og] = res.reshape(n, oh, ow, og).transpose(0, 3, 1, 2)
    return out

"""Ternary host toolkit: TTQ weights, DeepChip run-length streams, k-bit activation codes.

Everything here runs on the host, before or after the engine, and is exact: integers and
:class:`fractions.Fraction`, never a float where the hardware has none (spec
``intfamily.md`` section 7).

* **Weight codes** (2 bits per weight): ``ZERO = 0b00``, ``POS = 0b01`` (+Wp), ``NEG = 0b11``
  (-Wn); ``0b10`` is never a weight (the hardware stream uses it as a PAD entry).
* **Scales**: ``Wp`` and ``Wn`` are positive magnitudes, stored as unsigned fixed point
  (:class:`TernaryFormat`); the convention is ``c = Wp * S_p - Wn * S_n`` with ``S_p``/``S_n`` the
  sums of the activations whose weight is ``+Wp``/``-Wn`` (DeepChip reduce-and-scale).
* **TTQ ternarizer** (:func:`ternarize`): threshold ``Delta = t * max|w|`` per layer or per
  output channel, scales from the weights.
* **k-bit bounded-ReLU quantiser** (DoReFa ``quantize_k``, half-up as the spec fixes):
  ``q = floor((2**k - 1) * clip(a, 0, 1) + 1/2)`` (:func:`quantize_act_fixed`,
  :func:`quantize_act`, :func:`dequantize_act`).
* **DeepChip reference run-length format** (:func:`rle_encode`, :func:`rle_decode`,
  :func:`rle_rows`): sign and distance vectors over the row-major flattening of ``W^T``.
* **Hardware entry stream** (:func:`hw_encode`, :func:`hw_decode`, :func:`hw_stats`,
  :func:`deepchip_to_hw`): what the engine's decoder reads, described in :func:`hw_encode`.

Matrices of codes are always ``W^T``: rows are output channels, columns are inputs.
"""

import numbers
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np


__all__ = [
    "ZERO", "POS", "NEG", "PAD", "CODE_NAMES",
    "check_codes", "codes_to_signs", "signs_to_codes",
    "TernaryFormat", "TernaryWeights", "ternarize",
    "quantize_act_fixed", "quantize_act", "dequantize_act",
    "rle_encode", "rle_decode", "rle_rows",
    "hw_entry", "hw_encode", "hw_decode", "hw_stats", "deepchip_to_hw",
]

#: Weight code of a zero weight (and of a ZERO filler entry in the hardware stream).
ZERO = 0b00
#: Weight code of ``+Wp``.
POS = 0b01
#: Weight code of ``-Wn``.
NEG = 0b11
#: The unused weight code; in the hardware stream it marks a PAD entry.
PAD = 0b10

#: Meaning of each 2-bit code, as written into manifests.
CODE_NAMES = {"0b00": "0", "0b01": "+Wp", "0b11": "-Wn", "0b10": "unused (rejected)"}

_ALLOWED_CODES = "0b00 (0), 0b01 (+Wp) or 0b11 (-Wn)"

#: The sign convention of the scales, as written into manifests.
CONVENTION = ("c = Wp*S_p - Wn*S_n; Wp and Wn are positive magnitudes; S_p / S_n sum the "
              "activations whose weight code is 0b01 / 0b11")


def _is_int(x):
    return isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_))


def _check_int(name, value, lo, hi):
    if not _is_int(value) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")
    return int(value)


def _int_array(name, values):
    arr = np.asarray(values)
    if arr.size == 0 and arr.dtype.kind in "fiuO":     # [] is float64 to numpy
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "O" and all(_is_int(v) for v in arr.flat):
            return arr
        raise ValueError(f"{name} must be an array of integers, not dtype {arr.dtype}")
    return arr


# --- weight codes ---------------------------------------------------------------------------

def check_codes(codes):
    """Check that every entry of ``codes`` is a weight code (0, 1 or 3).

    Returns
    -------
    numpy.ndarray
        ``codes`` as a ``uint8`` array of the same shape.

    Raises
    ------
    ValueError
        If ``codes`` is not an integer array, or names the first (row-major flat) index whose
        value is not ``0b00``, ``0b01`` or ``0b11``.
    """
    arr = _int_array("weight codes", codes)
    flat = arr.reshape(-1)
    bad = np.flatnonzero((flat != ZERO) & (flat != POS) & (flat != NEG))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"weight code at flat index {i} is {int(flat[i])} ({int(flat[i]):#04b}); "
                         f"allowed codes are {_ALLOWED_CODES}")
    return arr.astype(np.uint8)


def codes_to_signs(codes):
    """Weight codes to signs: ``0b00 -> 0``, ``0b01 -> +1``, ``0b11 -> -1`` (int8 array)."""
    arr = check_codes(codes)
    return np.where(arr == POS, 1, np.where(arr == NEG, -1, 0)).astype(np.int8)


def signs_to_codes(signs):
    """Signs in {-1, 0, +1} to weight codes (uint8 array); the inverse of :func:`codes_to_signs`.

    Raises
    ------
    ValueError
        Naming the first flat index whose value is not -1, 0 or +1.
    """
    arr = _int_array("signs", signs)
    flat = arr.reshape(-1)
    bad = np.flatnonzero((flat != -1) & (flat != 0) & (flat != 1))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"sign at flat index {i} is {int(flat[i])}; allowed signs are -1, 0, +1")
    return np.where(arr == 1, POS, np.where(arr == -1, NEG, ZERO)).astype(np.uint8)


# --- format descriptor ----------------------------------------------------------------------

def _to_fraction(name, x):
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real):
        raise ValueError(f"{name} must be a positive real number, not {x!r}")
    if isinstance(x, np.floating):
        x = float(x)                    # exact: float16/32/64 all widen exactly to float64
    elif isinstance(x, np.integer):
        x = int(x)
    try:
        return Fraction(x)
    except (ValueError, OverflowError, TypeError):
        raise ValueError(f"{name} must be a positive real number, not {x!r}") from None


@dataclass(frozen=True, kw_only=True)
class TernaryFormat:
    """Number formats of a ternary layer: activation codes and the two weight scales.

    The engine computes ``c = Wp * S_p - Wn * S_n``: ``S_p`` (``S_n``) sums the activation codes
    whose weight code is ``0b01`` (``0b11``), and the scales ``Wp`` and ``Wn`` are positive
    magnitudes stored as unsigned fixed point. The activation step ``1 / (2**act_bits - 1)`` of
    :func:`quantize_act` is not part of the codes; fold it into the scales.

    Parameters
    ----------
    act_bits : int, 1..16
        Activation codes are unsigned integers ``0 .. 2**act_bits - 1``.
    scale_bits : int, 2..32
        Width of a scale code; codes are ``1 .. 2**scale_bits - 1`` (0 is not a positive scale).
    scale_frac : int, 0..scale_bits
        Fraction bits of a scale code: scale = code / 2**scale_frac.
    per_channel : bool
        One ``(Wp, Wn)`` pair per output channel, else one pair for the whole layer.

    Raises
    ------
    ValueError
        Naming the field, its value and the allowed values.
    """

    act_bits: int = 8
    scale_bits: int = 16
    scale_frac: int = 12
    per_channel: bool = False

    def __post_init__(self):
        _check_int("TernaryFormat.act_bits", self.act_bits, 1, 16)
        _check_int("TernaryFormat.scale_bits", self.scale_bits, 2, 32)
        _check_int("TernaryFormat.scale_frac", self.scale_frac, 0, self.scale_bits)
        if not isinstance(self.per_channel, bool):
            raise ValueError(f"TernaryFormat.per_channel must be True or False, "
                             f"not {self.per_channel!r}")

    @property
    def act_max(self):
        """Largest activation code, ``2**act_bits - 1``."""
        return (1 << self.act_bits) - 1

    @property
    def scale_code_max(self):
        """Largest scale code, ``2**scale_bits - 1``."""
        return (1 << self.scale_bits) - 1

    @property
    def scale_min(self):
        """Smallest representable scale (code 1), as a Fraction."""
        return Fraction(1, 1 << self.scale_frac)

    @property
    def scale_max(self):
        """Largest representable scale (code ``2**scale_bits - 1``), as a Fraction."""
        return Fraction(self.scale_code_max, 1 << self.scale_frac)

    def encode_scale(self, x):
        """The code of a positive scale ``x``: ``floor(x * 2**scale_frac + 1/2)``, computed
        exactly (round to nearest, ties up, which for positive x is away from zero).

        Raises
        ------
        ValueError
            If ``x`` is not a positive real, rounds to code 0 (names the smallest representable
            scale) or to a code above ``2**scale_bits - 1`` (names the largest).
        """
        v = _to_fraction("scale", x)
        if v <= 0:
            raise ValueError(f"scale must be a positive real number, not {x!r}")
        code = int((v * (1 << self.scale_frac) + Fraction(1, 2)) // 1)
        if code == 0:
            raise ValueError(f"scale {x!r} is too small for {self.scale_bits} bits with "
                             f"{self.scale_frac} fraction bits: the smallest representable "
                             f"scale is {self.scale_min} = {float(self.scale_min)!r}")
        if code > self.scale_code_max:
            raise ValueError(f"scale {x!r} is too large for {self.scale_bits} bits with "
                             f"{self.scale_frac} fraction bits: the largest representable "
                             f"scale is {self.scale_max} = {float(self.scale_max)!r}")
        return code

    def decode_scale(self, code):
        """The value of a scale code, ``code / 2**scale_frac``, as a Fraction."""
        code = _check_int("scale code", code, 1, self.scale_code_max)
        return Fraction(code, 1 << self.scale_frac)

    def scale_codes(self, wp, wn, channels):
        """Scale codes for a layer of ``channels`` output channels.

        ``wp`` and ``wn`` are scalars or arrays of length 1 or ``channels``. A per-layer format
        (``per_channel=False``) needs one value, so arrays must hold equal entries; either way the
        result is broadcast to every channel.

        Returns
        -------
        (numpy.ndarray, numpy.ndarray)
            The ``Wp`` and ``Wn`` codes, two int64 arrays of length ``channels``.
        """
        channels = _check_int("channels", channels, 1, 1 << 31)
        out = []
        for name, vals in (("Wp", wp), ("Wn", wn)):
            arr = np.asarray(vals, dtype=object).reshape(-1)
            if arr.size not in (1, channels):
                raise ValueError(f"{name} must have 1 or {channels} entries, not {arr.size}")
            codes = [self.encode_scale(v) for v in arr]
            exact = [_to_fraction(name, v) for v in arr]
            if not self.per_channel and len(set(exact)) > 1:
                i = next(i for i, v in enumerate(exact) if v != exact[0])
                raise ValueError(f"{name} must be one value per layer (per_channel is False), "
                                 f"but entry {i} is {arr[i]!r} and entry 0 is {arr[0]!r}")
            out.append(np.array(codes * (channels // len(codes)), dtype=np.int64))
        return out[0], out[1]

    def as_dict(self):
        """A JSON-serialisable description for a manifest."""
        return {
            "kind": "ternary",
            "codes": dict(CODE_NAMES),
            "act": {"bits": self.act_bits, "signed": False, "min": 0, "max": self.act_max},
            "scale": {"bits": self.scale_bits, "frac": self.scale_frac, "signed": False,
                      "code_min": 1, "code_max": self.scale_code_max,
                      "min": str(self.scale_min), "max": str(self.scale_max)},
            "per_channel": self.per_channel,
            "convention": CONVENTION,
        }


# --- TTQ ------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)         # array fields: no element-wise __eq__
class TernaryWeights:
    """Result of :func:`ternarize`.

    Attributes
    ----------
    codes : numpy.ndarray, uint8, same shape as the weights (K x N)
        Weight codes ``ZERO``/``POS``/``NEG``.
    wp, wn : numpy.ndarray, float64, length N
        Positive scale magnitudes per output channel (a per-layer pair is repeated N times).
    threshold : numpy.ndarray, float64, length N
        The threshold ``Delta`` used for each channel (repeated for a per-layer threshold).
    axis : int
        The output-channel axis of ``codes`` (0 or 1).
    """

    codes: np.ndarray
    wp: np.ndarray
    wn: np.ndarray
    threshold: np.ndarray
    axis: int = field(default=-1)

    def dense(self):
        """The ternary weights as floats: ``+wp``, ``0`` or ``-wn`` per entry."""
        shape = [1] * self.codes.ndim
        shape[self.axis] = -1
        wp = self.wp.reshape(shape)
        wn = self.wn.reshape(shape)
        return np.where(self.codes == POS, wp, np.where(self.codes == NEG, -wn, 0.0))


def ternarize(w, t=0.05, *, per_channel=False, axis=-1):
    """TTQ ternarization of a float weight matrix.

    ``w`` is K x N (inputs x output channels) when ``axis=-1``; ``axis`` names the output-channel
    axis. The threshold is ``Delta = t * max|w|``, over the whole layer, or over each channel
    when ``per_channel``. Codes: ``POS`` where ``w > Delta``, ``NEG`` where ``w < -Delta``, ``ZERO``
    otherwise. The scales are taken from the weights: ``Wp`` is the mean of the weights above
    ``Delta``, ``Wn`` the mean of ``|w|`` over the weights below ``-Delta`` (over the layer, or per
    channel). A class with no member gets the other class's scale, or 1.0 when both are empty
    (an all-zero channel), so that every scale stays a positive, encodable magnitude.

    The value t = 0.05 is the spec's recollection of the paper's choice (UNCONFIRMED there).

    Returns
    -------
    TernaryWeights
    """
    w = np.asarray(w)
    if w.dtype.kind not in "fiu" or w.ndim != 2 or w.size == 0:
        raise ValueError(f"weights must be a non-empty 2-D real matrix, not shape {w.shape} "
                         f"of dtype {w.dtype}")
    w = w.astype(np.float64)
    if not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite")
    if isinstance(t, (bool, np.bool_)) or not isinstance(t, numbers.Real) or not 0 <= t <= 1:
        raise ValueError(f"t must be a real number in [0, 1], not {t!r}")
    if not _is_int(axis) or not -2 <= axis <= 1:
        raise ValueError(f"axis must be 0, 1, -1 or -2, not {axis!r}")
    axis = int(axis) % 2
    wm = np.moveaxis(w, axis, -1)                   # K x N, channels last
    n = wm.shape[1]
    if per_channel:
        delta = float(t) * np.max(np.abs(wm), axis=0)
    else:
        delta = np.full(n, float(t) * float(np.max(np.abs(wm))))
    pos = wm > delta
    neg = wm < -delta
    if per_channel:
        npos, nneg = pos.sum(axis=0), neg.sum(axis=0)
        spos = np.where(pos, wm, 0.0).sum(axis=0)
        sneg = np.where(neg, -wm, 0.0).sum(axis=0)
    else:
        npos, nneg = np.full(n, pos.sum()), np.full(n, neg.sum())
        spos = np.full(n, np.where(pos, wm, 0.0).sum())
        sneg = np.full(n, np.where(neg, -wm, 0.0).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        wp = spos / npos
        wn = sneg / nneg
    wp, wn = (np.where(npos > 0, wp, np.where(nneg > 0, wn, 1.0)),
              np.where(nneg > 0, wn, np.where(npos > 0, wp, 1.0)))
    codes = np.where(pos, POS, np.where(neg, NEG, ZERO)).astype(np.uint8)
    return TernaryWeights(codes=np.moveaxis(codes, -1, axis), wp=wp, wn=wn,
                          threshold=delta.astype(np.float64), axis=axis)


# --- k-bit activation quantiser -------------------------------------------------------------

def _check_k(k):
    return _check_int("k", k, 1, 16)


def _shape_result(q, scalar):
    return int(q.reshape(-1)[0]) if scalar else q


def quantize_act_fixed(x_codes, frac_bits, k):
    """k-bit bounded-ReLU quantiser on signed fixed-point inputs, in integers only.

    ``x_codes`` holds signed integers of value ``x / 2**frac_bits``. With
    ``a = clip(value, 0, 1)`` the result is ``q = floor((2**k - 1) * a + 1/2)`` in
    ``0 .. 2**k - 1``: round half up (an exact ``.5`` goes up), not numpy's half-to-even.

    Returns
    -------
    numpy.ndarray of int64 (same shape), or an int for a scalar input.
    """
    k = _check_k(k)
    f = _check_int("frac_bits", frac_bits, 0, 64)
    scalar = np.ndim(x_codes) == 0
    x = _int_array("x_codes", x_codes)
    m = (1 << k) - 1
    one = 1 << f
    # a = clip(x, 0, 2**f) / 2**f, so q = floor((2 m xc + 2**f) / 2**(f + 1)).
    if x.dtype.kind == "O" or f + k + 2 > 62:
        xc = [min(max(int(v), 0), one) for v in x.reshape(-1).tolist()]
        q = np.array([(2 * m * v + one) >> (f + 1) for v in xc], dtype=np.int64)
        q = q.reshape(x.shape)
    else:
        if x.dtype == np.uint64:                # would wrap in int64: clip first
            x = np.minimum(x, np.uint64(one))
        xc = np.clip(x.astype(np.int64), 0, one)
        q = (2 * m * xc + one) >> (f + 1)
    return _shape_result(q, scalar)


def quantize_act(x, k):
    """k-bit bounded-ReLU quantiser on real inputs, exactly.

    ``q = floor((2**k - 1) * clip(x, 0, 1) + 1/2)``, evaluated exactly on the binary value of
    each float (or on each Fraction / int of an object array), so ties at exactly ``.5`` go up.
    NaN is rejected; ``+inf`` gives ``2**k - 1`` and ``-inf`` gives 0.

    Returns
    -------
    numpy.ndarray of int64 (same shape), or an int for a scalar input.
    """
    k = _check_k(k)
    m = (1 << k) - 1
    scalar = np.ndim(x) == 0
    arr = np.asarray(x)
    if arr.dtype.kind == "f":
        arr = arr.astype(np.float64)
        if np.isnan(arr).any():
            i = int(np.flatnonzero(np.isnan(arr.reshape(-1)))[0])
            raise ValueError(f"activation at flat index {i} is NaN")
        values = np.clip(arr, 0.0, 1.0).reshape(-1).tolist()
        out = []
        for v in values:
            num, den = v.as_integer_ratio()         # den is a power of two: exact
            out.append((2 * m * num + den) // (2 * den))
    elif arr.dtype.kind in "iu":
        out = np.where(arr >= 1, m, 0).reshape(-1)      # clip(int, 0, 1) is 0 or 1
    elif arr.dtype.kind == "O":
        out = []
        for i, v in enumerate(arr.reshape(-1).tolist()):
            fv = _to_fraction(f"activation at flat index {i}", v)
            a = min(max(fv, Fraction(0)), Fraction(1))
            out.append(int((m * a + Fraction(1, 2)) // 1))
    else:
        raise ValueError(f"activations must be real numbers, not dtype {arr.dtype}")
    q = np.array(out, dtype=np.int64).reshape(arr.shape)
    return _shape_result(q, scalar)


def dequantize_act(q, k, *, exact=False):
    """Activation codes back to values ``q / (2**k - 1)``.

    Returns float64 values, or Fractions (an object array, or a Fraction for a scalar input)
    when ``exact``.
    """
    k = _check_k(k)
    m = (1 << k) - 1
    scalar = np.ndim(q) == 0
    arr = _int_array("activation codes", q)
    flat = arr.reshape(-1)
    bad = [i for i, v in enumerate(flat.tolist()) if not 0 <= v <= m]
    if bad:
        raise ValueError(f"activation code at flat index {bad[0]} is {int(flat[bad[0]])}; "
                         f"{k}-bit codes are 0..{m}")
    if exact:
        vals = np.array([Fraction(int(v), m) for v in flat.tolist()], dtype=object)
        vals = vals.reshape(arr.shape)
        return vals.reshape(-1)[0] if scalar else vals
    vals = arr.astype(np.float64) / m
    return float(vals) if scalar else vals


# --- DeepChip reference run-length format ---------------------------------------------------

def _check_matrix(wt):
    arr = check_codes(wt)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"weight code matrix must be 2-D and non-empty, not shape {arr.shape}")
    return arr


def _check_shape(shape):
    try:
        rows, cols = shape
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (rows, cols), not {shape!r}") from None
    return (_check_int("rows", rows, 1, 1 << 40), _check_int("cols", cols, 1, 1 << 40))


def rle_encode(wt):
    """DeepChip run-length encoding of the non-zeros of ``W^T``.

    ``wt`` (rows = outputs, cols = inputs, codes 0/1/3) is flattened row-major. For the k-th
    non-zero, at flat index ``i_k``: ``signs[k]`` is 0 for ``+Wp`` and 1 for ``-Wn``, and
    ``distances[k] = i_k - i_{k-1}`` with ``i_{-1} = 0`` (so ``i_0 = d_0``, and a non-zero at flat
    index 0 has ``d_0 = 0``). Distances run across row boundaries.

    Returns
    -------
    (indices, signs, distances) : three int64 arrays of length nnz
    """
    flat = _check_matrix(wt).reshape(-1)
    indices = np.flatnonzero(flat).astype(np.int64)
    signs = (flat[indices] == NEG).astype(np.int64)
    distances = np.diff(indices, prepend=0).astype(np.int64)
    return indices, signs, distances


def _rle_indices(signs, distances, shape):
    rows, cols = _check_shape(shape)
    s = _int_array("signs", signs).reshape(-1)
    d = _int_array("distances", distances).reshape(-1)
    if s.size != d.size:
        raise ValueError(f"signs and distances must have equal lengths, not {s.size} and {d.size}")
    last = rows * cols - 1
    g = 0
    indices = []
    for k, (sk, dk) in enumerate(zip(s.tolist(), d.tolist())):
        if sk not in (0, 1):
            raise ValueError(f"sign {k} is {sk}; signs are 0 (+Wp) or 1 (-Wn)")
        if dk < (1 if k else 0):
            raise ValueError(f"distance {k} is {dk}; distances must be "
                             + (">= 1 after the first" if k else ">= 0"))
        g += dk
        if g > last:
            raise ValueError(f"distance {k} reaches flat index {g}, past the last index {last} "
                             f"of the {rows}x{cols} matrix")
        indices.append(g)
    return np.array(indices, dtype=np.int64), s.astype(np.int64), rows, cols


def rle_decode(signs, distances, shape):
    """The ``(rows, cols)`` code matrix of a DeepChip ``(signs, distances)`` pair.

    Raises
    ------
    ValueError
        Naming the entry: a sign other than 0/1, a negative distance, a distance 0 after the
        first entry, or an index past the matrix.
    """
    indices, s, rows, cols = _rle_indices(signs, distances, shape)
    flat = np.zeros(rows * cols, dtype=np.uint8)
    flat[indices] = np.where(s == 1, NEG, POS)
    return flat.reshape(rows, cols)


def rle_rows(signs, distances, shape):
    """Per-row column lists, as the DeepChip decoder sees them.

    Returns
    -------
    list of (Ip, In)
        For each row, the columns holding ``+Wp`` and those holding ``-Wn`` (lists of ints,
        ascending); rows without non-zeros give two empty lists.
    """
    indices, s, rows, cols = _rle_indices(signs, distances, shape)
    out = [([], []) for _ in range(rows)]
    for g, sk in zip(indices.tolist(), s.tolist()):
        out[g // cols][sk].append(g % cols)
    return out


# --- hardware entry stream ------------------------------------------------------------------

def _check_z_bits(z_bits):
    return _check_int("z_bits", z_bits, 1, 30)


def hw_entry(w2, z, z_bits):
    """One stream entry: bits [1:0] = ``w2``, bits [z_bits+1:2] = ``z``."""
    z_bits = _check_z_bits(z_bits)
    _check_int("w2", w2, 0, 3)
    _check_int("z", z, 0, (1 << z_bits) - 1)
    return (int(z) << 2) | int(w2)


def _hw_from_positions(positions, codes, rows, cols, z_bits, min_row_entries):
    # Shared by hw_encode and deepchip_to_hw: positions ascending, codes POS/NEG.
    min_row_entries = _check_int("min_row_entries", min_row_entries, 0, 1 << 20)
    zmax = min((1 << z_bits) - 1, cols - 1)
    last = rows * cols - 1
    targets = list(zip(positions, codes))
    if not targets or targets[-1][0] != last:
        targets.append((last, ZERO))            # end at the last position: every row is reached
    entries = []                                # (pos, w2, z)
    pos = -1
    for t, code in targets:
        while t - pos - 1 > zmax:               # gap too long for one z: ZERO filler
            pos += zmax + 1
            entries.append((pos, ZERO, zmax))
        entries.append((t, code, t - pos - 1))
        pos = t
    # Each step advances at most zmax + 1 <= cols, so every row gets at least one landing entry
    # and the last entry landing in a row is well defined.
    landing = [0] * rows
    last_of_row = [0] * rows
    for i, (p, _, _) in enumerate(entries):
        landing[p // cols] += 1
        last_of_row[p // cols] = i
    out = []
    for i, (p, w2, z) in enumerate(entries):
        out.append((z << 2) | w2)
        r = p // cols
        if last_of_row[r] == i and landing[r] < min_row_entries:
            out.extend([PAD] * (min_row_entries - landing[r]))    # PAD: z = 0, lands in row r
    dtype = np.uint8 if z_bits <= 6 else np.uint32
    return np.array(out, dtype=dtype)


def hw_encode(wt, z_bits, *, min_row_entries=0):
    """Encode ``W^T`` (rows x cols codes) as the engine's entry stream.

    An entry has ``2 + z_bits`` bits: bits [1:0] are a 2-bit code ``w2`` and bits
    [z_bits+1:2] a zero-run length ``z``. The decoder starts at ``pos = -1``; each entry does
    ``pos += z + 1`` and then, for ``w2`` = POS/NEG, places that weight at flat position ``pos``
    (row ``pos // cols``, column ``pos % cols``); ``w2 = ZERO`` is a filler (a zero weight at
    ``pos``). ``w2 = 0b10`` is a PAD: it leaves ``pos`` alone and does nothing (its ``z`` is 0 here
    and ignored by the decoder).

    The encoder guarantees:

    * every ``z <= zmax = min(2**z_bits - 1, cols - 1)``: a longer zero gap gets ZERO fillers,
      placed greedily every ``zmax + 1`` positions;
    * the stream ends with an entry at ``rows*cols - 1`` (a ZERO filler if that weight is 0);
    * so no entry advances ``pos`` by more than ``cols``: it crosses at most one row boundary,
      and every row has at least one entry landing in it;
    * every row has at least ``min_row_entries`` entries landing in it. An entry lands in the
      row holding its ``pos``; a PAD lands in the row of the current ``pos`` (the row of the
      previous non-PAD entry, or row 0 at the start, where ``pos = -1``). Short rows get PADs
      right after their last landing entry.

    Returns
    -------
    numpy.ndarray
        The entries, ``uint8`` for ``z_bits <= 6``, else ``uint32``.
    """
    z_bits = _check_z_bits(z_bits)
    arr = _check_matrix(wt)
    rows, cols = arr.shape
    flat = arr.reshape(-1)
    positions = np.flatnonzero(flat)
    return _hw_from_positions(positions.tolist(), flat[positions].tolist(), rows, cols,
                              z_bits, min_row_entries)


def deepchip_to_hw(signs, distances, rows, cols, z_bits, *, min_row_entries=0):
    """Convert DeepChip ``(signs, distances)`` to the stream :func:`hw_encode` gives for the
    same matrix, without building the matrix."""
    z_bits = _check_z_bits(z_bits)
    indices, s, rows, cols = _rle_indices(signs, distances, (rows, cols))
    codes = np.where(s == 1, NEG, POS)
    return _hw_from_positions(indices.tolist(), codes.tolist(), rows, cols, z_bits,
                              min_row_entries)


def hw_decode(entries, rows, cols, z_bits):
    """Decode an entry stream to the ``(rows, cols)`` code matrix (the semantics of
    :func:`hw_encode`).

    Raises
    ------
    ValueError
        Naming the entry index: an entry wider than ``2 + z_bits`` bits, a ``pos`` past
        ``rows*cols - 1``, or a stream whose last non-PAD entry is not at ``rows*cols - 1``.
    """
    z_bits = _check_z_bits(z_bits)
    rows, cols = _check_shape((rows, cols))
    e = _int_array("entries", entries).reshape(-1).tolist()
    last = rows * cols - 1
    top = 1 << (2 + z_bits)
    flat = np.zeros(rows * cols, dtype=np.uint8)
    pos = -1
    last_entry = None
    for i, v in enumerate(e):
        if not 0 <= v < top:
            raise ValueError(f"entry {i} is {v}, not a {2 + z_bits}-bit entry")
        w2, z = v & 3, v >> 2
        if w2 == PAD:
            continue
        pos += z + 1
        if pos > last:
            raise ValueError(f"entry {i} advances to flat position {pos}, past the last "
                             f"position {last} of the {rows}x{cols} matrix")
        flat[pos] = w2
        last_entry = i
    if pos != last:
        where = "the stream is empty" if last_entry is None else f"entry {last_entry}"
        raise ValueError(f"stream ends at flat position {pos} ({where}), not at the last "
                         f"position {last} of the {rows}x{cols} matrix")
    return flat.reshape(rows, cols)


def hw_stats(entries, z_bits, rows=None, cols=None):
    """Counts of an entry stream.

    Returns
    -------
    dict
        ``entries`` (total), ``nonzeros`` (= ``pos`` + ``neg``), ``pos``, ``neg``, ``fillers``
        (ZERO entries), ``pads``, ``bits`` (``entries * (2 + z_bits)``) and ``max_z`` (over
        non-PAD entries; -1 if none). With ``rows`` and ``cols``, also ``row_entries``: the
        number of entries landing in each row (see :func:`hw_encode`).
    """
    z_bits = _check_z_bits(z_bits)
    e = _int_array("entries", entries).reshape(-1).tolist()
    w2 = [v & 3 for v in e]
    nonpad_z = [v >> 2 for v in e if v & 3 != PAD]
    stats = {
        "entries": len(e),
        "pos": w2.count(POS),
        "neg": w2.count(NEG),
        "nonzeros": w2.count(POS) + w2.count(NEG),
        "fillers": w2.count(ZERO),
        "pads": w2.count(PAD),
        "bits": len(e) * (2 + z_bits),
        "max_z": max(nonpad_z, default=-1),
    }
    if rows is not None or cols is not None:
        rows, cols = _check_shape((rows, cols))
        counts = [0] * rows
        pos = -1
        for v in e:
            if v & 3 != PAD:
                pos += (v >> 2) + 1
            r = max(pos, 0) // cols
            if r >= rows:
                raise ValueError(f"stream runs past the last row of the {rows}x{cols} matrix")
            counts[r] += 1
        stats["row_entries"] = counts
    return stats

"""Floating-point number-format descriptor shared by the HDL units and the golden model.

One :class:`FloatFormat` describes the encoding (field widths, bias, underflow style, special
codes) and the arithmetic policy (rounding, overflow) of a binary floating-point format. The
Amaranth units in :mod:`tessera.hdl.arith` and the NumPy twin in :mod:`tessera.sim.fp` are both built from the same
object, so they cannot drift apart. The exact arithmetic semantics (rounding, canonical outputs,
zero signs, overflow and underflow) are stated once, in the docstring of :mod:`tessera.sim.fp` and in
``docs/float.md``.

This module is pure Python (plus NumPy for the vectorized predicates) and never imports Amaranth.

Encoding
--------
A code of ``width = 1 + exp_bits + man_bits`` bits is ``sign | exponent field e | fraction f``
(sign in the MSB). With ``m = man_bits`` and ``F = 2**exp_bits - 1`` (:attr:`exp_max_field`):

* ``subnormals=True`` (IEEE gradual underflow): ``e = 0`` gives ``(-1)**s * 2**(1-bias) * f/2**m``
  (zero when ``f = 0``); ``e >= 1`` gives ``(-1)**s * 2**(e-bias) * (1 + f/2**m)``.
* ``subnormals=False`` (IBM DLFloat style): every exponent field, including ``e = 0``, is an
  ordinary binade ``(-1)**s * 2**(e-bias) * (1 + f/2**m)``, except that the all-zero magnitude
  ``e = 0, f = 0`` is zero. ``2**-bias`` itself is therefore not representable.

Special codes (``specials``), applied on top of the above:

============ ============================================ ======================= ===========
specials     NaN codes                                    Inf codes               -0
============ ============================================ ======================= ===========
``"ieee"``   ``e = F, f != 0`` (either sign)               ``e = F, f = 0``        yes
``"fn"``     ``e = F, f = 2**m - 1`` (either sign)         none                    yes
``"fnuz"``   ``1 0...0`` (sign bit only) only             none                    no
``"merged"`` ``e = F, f = 2**m - 1`` (either sign), "NINF" the same code         no (sign
                                                                                  don't-care)
============ ============================================ ======================= ===========

All other codes of the top binade are finite numbers in ``"fn"``, ``"fnuz"`` and ``"merged"``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

__all__ = [
    "FloatFormat", "FORMATS", "float_format",
    "fp8_e4m3", "fp8_e5m2", "hfp8", "hfp8_ibm", "fp16", "bf16", "dlfloat16", "fp32",
    "SPECIALS", "ROUNDINGS", "OVERFLOWS",
]

#: Allowed values of :attr:`FloatFormat.specials`.
SPECIALS = ("ieee", "fn", "fnuz", "merged")
#: Allowed values of :attr:`FloatFormat.rounding` (round to nearest, ties to even / away from 0).
ROUNDINGS = ("rne", "rnu")
#: Allowed values of :attr:`FloatFormat.overflow`.
OVERFLOWS = ("inf", "saturate")


def _choices(values):
    return ", ".join(repr(v) for v in values)


def _check_int(owner, name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{owner}.{name} must be an integer in {lo}..{hi}, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{owner}.{name} must be an integer in {lo}..{hi}, not {value!r}")


@dataclass(frozen=True)
class FloatFormat:
    """A binary floating-point format and its arithmetic policy.

    Parameters
    ----------
    name : str
        Short identifier (used in manifests, Verilog names and reports); letters, digits and
        ``_`` only.
    exp_bits : int
        Exponent field width, 2..8.
    man_bits : int
        Fraction (trailing significand) field width, 1..23. The significand has
        ``man_bits + 1`` bits including the hidden one.
    bias : int
        Exponent bias, ``0 <= bias <= 2**exp_bits - 1``.
    subnormals : bool
        ``True``: IEEE gradual underflow in exponent field 0. ``False``: exponent field 0 is an
        ordinary binade (DLFloat / IBM style) whose all-zero magnitude code is zero.
    specials : {"ieee", "fn", "fnuz", "merged"}
        Special-code policy, see the module docstring. ``"ieee"`` requires ``subnormals=True``;
        ``"merged"`` requires ``subnormals=False``.
    rounding : {"rne", "rnu"}
        Round to nearest, ties to even (``"rne"``) or ties away from zero (``"rnu"``, DLFloat's
        "round nearest up").
    overflow : {"inf", "saturate"}
        Result of a finite overflow: ``"inf"`` gives Inf (``"ieee"``), the canonical NaN
        (``"fn"``, ``"fnuz"``) or NINF (``"merged"``); ``"saturate"`` gives the largest finite
        value with the result's sign.

    Raises
    ------
    ValueError
        If any field is out of range or the combination is meaningless; the message names the
        field, the value and what is allowed.
    """

    name: str
    exp_bits: int
    man_bits: int
    bias: int
    subnormals: bool = True
    specials: str = "ieee"
    rounding: str = "rne"
    overflow: str = "inf"

    def __post_init__(self):
        own = "FloatFormat"
        if not isinstance(self.name, str) or not self.name or not all(
                c.isalnum() or c == "_" for c in self.name) or not self.name.isascii():
            raise ValueError(f"{own}.name must be a non-empty string of letters, digits and "
                             f"'_', not {self.name!r}")
        _check_int(own, "exp_bits", self.exp_bits, 2, 8)
        _check_int(own, "man_bits", self.man_bits, 1, 23)
        width = 1 + self.exp_bits + self.man_bits
        if width > 32:
            raise ValueError(f"{own} width 1 + exp_bits + man_bits must be <= 32, not {width} "
                             f"(exp_bits={self.exp_bits}, man_bits={self.man_bits})")
        _check_int(own, "bias", self.bias, 0, (1 << self.exp_bits) - 1)
        if not isinstance(self.subnormals, (bool, np.bool_)):
            raise ValueError(f"{own}.subnormals must be True or False, not {self.subnormals!r}")
        if self.specials not in SPECIALS:
            raise ValueError(f"{own}.specials must be one of {_choices(SPECIALS)}, "
                             f"not {self.specials!r}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"{own}.rounding must be one of {_choices(ROUNDINGS)}, "
                             f"not {self.rounding!r}")
        if self.overflow not in OVERFLOWS:
            raise ValueError(f"{own}.overflow must be one of {_choices(OVERFLOWS)}, "
                             f"not {self.overflow!r}")
        if self.specials == "ieee" and not self.subnormals:
            raise ValueError(
                f"{own}.subnormals=False is not allowed with specials='ieee': IEEE 754 formats "
                "have gradual underflow (use ftz=True for flush-to-zero arithmetic, or specials "
                "'fn', 'fnuz' or 'merged' for a format whose exponent field 0 is a normal binade)")
        if self.specials == "merged" and self.subnormals:
            raise ValueError(
                f"{own}.subnormals=True is not allowed with specials='merged': the merged "
                "NaN/Inf encoding is the IBM DLFloat style, in which exponent field 0 is an "
                "ordinary binade (set subnormals=False)")
        if self.specials == "ieee" and self.exp_bits < 2:  # pragma: no cover - exp_bits >= 2
            raise ValueError(f"{own}.exp_bits must be >= 2 with specials='ieee'")
        object.__setattr__(self, "subnormals", bool(self.subnormals))
        object.__setattr__(self, "exp_bits", int(self.exp_bits))
        object.__setattr__(self, "man_bits", int(self.man_bits))
        object.__setattr__(self, "bias", int(self.bias))

    # ------------------------------------------------------------------ geometry
    @property
    def width(self) -> int:
        """Total code width in bits, ``1 + exp_bits + man_bits``."""
        return 1 + self.exp_bits + self.man_bits

    @property
    def precision(self) -> int:
        """Significand width including the hidden bit, ``man_bits + 1``."""
        return self.man_bits + 1

    @property
    def sign_mask(self) -> int:
        """The sign bit, ``1 << (width - 1)``."""
        return 1 << (self.width - 1)

    @property
    def mag_mask(self) -> int:
        """Mask of the magnitude bits (exponent and fraction), ``sign_mask - 1``."""
        return self.sign_mask - 1

    @property
    def man_mask(self) -> int:
        """Mask of the fraction field, ``2**man_bits - 1``."""
        return (1 << self.man_bits) - 1

    @property
    def exp_max_field(self) -> int:
        """All-ones exponent field value, ``2**exp_bits - 1``."""
        return (1 << self.exp_bits) - 1

    @property
    def emin(self) -> int:
        """Unbiased exponent of the lowest normal binade.

        ``1 - bias`` with subnormals, ``-bias`` without (exponent field 0 is a normal binade, but
        its first code is zero, so :attr:`min_normal` is ``2**-bias * (1 + 2**-man_bits)``).
        """
        return 1 - self.bias if self.subnormals else -self.bias

    @property
    def emax(self) -> int:
        """Unbiased exponent of the highest binade holding finite numbers."""
        top = self.exp_max_field - 1 if self.specials == "ieee" else self.exp_max_field
        return top - self.bias

    @property
    def max_finite_code(self) -> int:
        """Code (sign 0) of the largest finite value."""
        m = self.man_bits
        if self.specials == "ieee":
            return ((self.exp_max_field - 1) << m) | self.man_mask
        if self.specials in ("fn", "merged"):
            return (self.exp_max_field << m) | (self.man_mask - 1)
        return self.mag_mask  # fnuz: the whole top binade is finite

    @property
    def max_finite(self) -> float:
        """Largest finite value."""
        frac = self.max_finite_code & self.man_mask
        return float(2.0 ** self.emax * (1 + frac / 2 ** self.man_bits))

    @property
    def min_normal_code(self) -> int:
        """Code of the smallest positive normal value (1 with no subnormals)."""
        return 1 << self.man_bits if self.subnormals else 1

    @property
    def min_normal(self) -> float:
        """Smallest positive normal value.

        ``2**emin`` with subnormals; ``2**-bias * (1 + 2**-man_bits)`` without (the code
        ``0x..01``), since ``2**-bias`` itself has the zero code.
        """
        if self.subnormals:
            return float(2.0 ** self.emin)
        return float(2.0 ** self.emin * (1 + 2.0 ** -self.man_bits))

    @property
    def min_subnormal(self) -> float | None:
        """Smallest positive subnormal value, or ``None`` for formats without subnormals."""
        if not self.subnormals:
            return None
        return float(2.0 ** (self.emin - self.man_bits))

    @property
    def min_positive(self) -> float:
        """Smallest positive value (the code 1)."""
        return self.min_subnormal if self.subnormals else self.min_normal

    # ------------------------------------------------------------------ special codes
    @property
    def has_inf(self) -> bool:
        """Whether the format encodes infinities distinct from NaN (``"ieee"`` only)."""
        return self.specials == "ieee"

    @property
    def has_neg_zero(self) -> bool:
        """Whether ``-0`` is a distinct value (``"ieee"`` and ``"fn"``).

        In ``"fnuz"`` the sign-only code is NaN; in ``"merged"`` it is a second zero code whose
        sign is "don't care" (arithmetic never produces it, see :meth:`zero_code`).
        """
        return self.specials in ("ieee", "fn")

    @property
    def nan_code(self) -> int:
        """Canonical NaN code emitted by the hardware and the twin.

        ``"ieee"``: sign 0, exponent all ones, fraction MSB 1 (quiet NaN): fp16 ``0x7E00``,
        bf16 ``0x7FC0``, e5m2 ``0x7E``, fp32 ``0x7FC00000``. ``"fn"`` and ``"merged"``: the
        all-ones magnitude with sign 0 (e4m3 ``0x7F``, dlfloat16 ``0x7FFF``, the NINF code).
        ``"fnuz"``: the sign-only code ``0x80``.
        """
        if self.specials == "ieee":
            return (self.exp_max_field << self.man_bits) | (1 << (self.man_bits - 1))
        if self.specials == "fnuz":
            return self.sign_mask
        return self.mag_mask

    def inf_code(self, sign: int = 0) -> int | None:
        """Code of ``+Inf`` (``sign=0``) or ``-Inf`` (``sign=1``); ``None`` without Inf."""
        if sign not in (0, 1):
            raise ValueError(f"sign must be 0 or 1, not {sign!r}")
        if not self.has_inf:
            return None
        return (sign << (self.width - 1)) | (self.exp_max_field << self.man_bits)

    def zero_code(self, sign: int = 0) -> int:
        """Code of a zero with the given sign (always 0 when :attr:`has_neg_zero` is False)."""
        if sign not in (0, 1):
            raise ValueError(f"sign must be 0 or 1, not {sign!r}")
        return (sign << (self.width - 1)) if self.has_neg_zero else 0

    def max_code(self, sign: int = 0) -> int:
        """Code of ``+max_finite`` or ``-max_finite`` (the saturation value)."""
        if sign not in (0, 1):
            raise ValueError(f"sign must be 0 or 1, not {sign!r}")
        return (sign << (self.width - 1)) | self.max_finite_code

    # ------------------------------------------------------------------ predicates
    def _codes(self, codes):
        c = np.asarray(codes)
        if c.dtype.kind not in "iu":
            raise ValueError(f"codes must be an integer array, not dtype {c.dtype}")
        return c.astype(np.int64) & ((1 << self.width) - 1)

    def is_nan(self, codes) -> np.ndarray:
        """Boolean array: which codes are NaN (NINF counts as NaN for ``"merged"``)."""
        c = self._codes(codes)
        mag = c & self.mag_mask
        if self.specials == "ieee":
            return ((mag >> self.man_bits) == self.exp_max_field) & ((mag & self.man_mask) != 0)
        if self.specials == "fnuz":
            return c == self.sign_mask
        return mag == self.mag_mask

    def is_inf(self, codes) -> np.ndarray:
        """Boolean array: which codes are +-Inf (always False without Inf)."""
        c = self._codes(codes)
        if not self.has_inf:
            return np.zeros(c.shape, dtype=bool)
        return (c & self.mag_mask) == (self.exp_max_field << self.man_bits)

    def is_ninf(self, codes) -> np.ndarray:
        """Boolean array: NaN or Inf codes (the merged NINF, any NaN, any Inf)."""
        return self.is_nan(codes) | self.is_inf(codes)

    def is_zero(self, codes) -> np.ndarray:
        """Boolean array: which codes are zero (+0, -0, and the merged style's 0x80..0)."""
        c = self._codes(codes)
        if self.specials == "fnuz":
            return c == 0
        return (c & self.mag_mask) == 0

    def is_subnormal(self, codes) -> np.ndarray:
        """Boolean array: non-zero codes in exponent field 0 of a format with subnormals."""
        c = self._codes(codes)
        if not self.subnormals:
            return np.zeros(c.shape, dtype=bool)
        mag = c & self.mag_mask
        return ((mag >> self.man_bits) == 0) & (mag != 0)

    def is_finite(self, codes) -> np.ndarray:
        """Boolean array: codes that are neither NaN nor Inf (zeros included)."""
        return ~self.is_ninf(codes)

    # ------------------------------------------------------------------ helpers
    def replace(self, **changes: Any) -> "FloatFormat":
        """Return a copy with some fields changed (validated again), e.g. overflow="saturate"."""
        return dataclasses.replace(self, **changes)

    def with_rounding(self, rounding: str) -> "FloatFormat":
        """Return a copy with another :attr:`rounding`."""
        return self.replace(rounding=rounding)

    def with_overflow(self, overflow: str) -> "FloatFormat":
        """Return a copy with another :attr:`overflow` policy."""
        return self.replace(overflow=overflow)

    def as_dict(self) -> dict:
        """All fields as a JSON-friendly dict (for manifests); :func:`float_format` inverts it."""
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """One-line human description, e.g. for reports."""
        sub = "subnormals" if self.subnormals else "no subnormals"
        return (f"{self.name}: 1-{self.exp_bits}-{self.man_bits}, bias {self.bias}, {sub}, "
                f"specials {self.specials}, {self.rounding}, overflow {self.overflow}, "
                f"max {self.max_finite:g}, min normal {self.min_normal:g}")


fp8_e4m3 = FloatFormat("fp8_e4m3", 4, 3, 7, subnormals=True, specials="fn")
fp8_e5m2 = FloatFormat("fp8_e5m2", 5, 2, 15, subnormals=True, specials="ieee")
hfp8 = FloatFormat("hfp8", 4, 3, 11, subnormals=True, specials="fnuz")
hfp8_ibm = FloatFormat("hfp8_ibm", 4, 3, 11, subnormals=False, specials="merged")
fp16 = FloatFormat("fp16", 5, 10, 15, subnormals=True, specials="ieee")
bf16 = FloatFormat("bf16", 8, 7, 127, subnormals=True, specials="ieee")
dlfloat16 = FloatFormat("dlfloat16", 6, 9, 31, subnormals=False, specials="merged",
                        rounding="rnu")
fp32 = FloatFormat("fp32", 8, 23, 127, subnormals=True, specials="ieee")

#: The named formats, by name.
FORMATS: dict[str, FloatFormat] = {
    f.name: f for f in (fp8_e4m3, fp8_e5m2, hfp8, hfp8_ibm, fp16, bf16, dlfloat16, fp32)
}

_FIELDS = tuple(f.name for f in dataclasses.fields(FloatFormat))


def float_format(spec: "str | FloatFormat | Mapping[str, Any]") -> FloatFormat:
    """Resolve a format specification.

    Parameters
    ----------
    spec : str or FloatFormat or mapping
        A name from :data:`FORMATS`; a :class:`FloatFormat` (returned unchanged); or a mapping
        with keys ``exp_bits`` and ``man_bits`` (required), ``bias`` (default
        ``2**(exp_bits-1) - 1``), ``name`` (default ``"custom_e<E>m<M>"``) and optionally
        ``subnormals``, ``specials``, ``rounding``, ``overflow``.

    Returns
    -------
    FloatFormat

    Raises
    ------
    ValueError
        Unknown name (the message lists the allowed names), unknown or missing mapping keys,
        or an invalid field.
    """
    if isinstance(spec, FloatFormat):
        return spec
    if isinstance(spec, str):
        try:
            return FORMATS[spec]
        except KeyError:
            raise ValueError(f"float format {spec!r} is unknown; allowed names are "
                             f"{_choices(FORMATS)}, or a dict with exp_bits, man_bits, bias"
                             ) from None
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - set(_FIELDS))
        if unknown:
            raise ValueError(f"float format dict has unknown key(s) {unknown}; allowed keys are "
                             f"{_choices(_FIELDS)}")
        missing = [k for k in ("exp_bits", "man_bits") if k not in spec]
        if missing:
            raise ValueError(f"float format dict is missing required key(s) {missing}")
        kw = dict(spec)
        e, m = kw["exp_bits"], kw["man_bits"]
        if "bias" not in kw and isinstance(e, int) and not isinstance(e, bool) and e >= 1:
            kw["bias"] = (1 << (e - 1)) - 1
        kw.setdefault("name", f"custom_e{e}m{m}")
        return FloatFormat(**kw)
    raise ValueError(f"float format spec must be a format name, a FloatFormat or a dict, "
                     f"not {spec!r}")

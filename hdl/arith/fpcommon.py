"""Building blocks shared by the floating-point units (`FPMul`, `FPAdd`, `FPFMA`, `FPMac`,
`FPConvert`).

Every unit is written as a chain of combinational *steps* on an internal, unbounded-exponent
representation (`Unpacked`): ``value = (-1)**sign * sig * 2**(exp - (len(sig) - 1))``, i.e.
``exp`` is the unbiased exponent of the most significant bit of ``sig``. Special operands travel
as flags (``nan``, ``inf``, ``zero``) beside the finite value. `round_pack` is the single place
where a finite value is rounded (RNE, RNU or stochastic) into a `FloatFormat` code, with
gradual or flushed underflow and the format's overflow policy. `Pipeline` inserts registers
between steps, so a unit's ``stages`` parameter moves registers without touching the datapath.

Rounding exactness argument used by the adders: the smaller operand is aligned with a sticky
bit *jammed* into the least significant bit of a window that is at least ``p + d + 3`` bits wide
(``p`` result precision, ``d`` stochastic-rounding bits) and the larger operand has a zero in
that bit. The computed sum is then the odd neighbour of the exact sum on the window grid, which
has the same floor at every coarser precision, so round-to-nearest (guard + sticky) and
stochastic rounding (the top ``d`` discarded bits) see exactly the bits of the exact sum.
"""

from amaranth import Cat, Const, Mux, Signal, signed
from amaranth.hdl import Value

from .formats import FloatFormat


__all__ = [
    "FormatInfo", "Unpacked", "Pipeline", "fmt_info", "check_format", "check_bool",
    "check_stages", "check_choice", "exp_width", "lzc", "normalize", "normalize1",
    "shr_sticky", "unpack", "unpack_norm", "multiply", "multiply_norm", "underflow_floor",
    "add", "add_align", "add_sum", "round_pack", "special_codes", "plan_cuts",
    "register_inputs", "check_sr_bits",
]


# --------------------------------------------------------------------------------------------
# Parameter validation helpers (messages name the parameter, the value and what is allowed).

def check_format(name, value):
    """Return ``value`` if it is a `FloatFormat`, else raise `TypeError` naming ``name``."""
    if not isinstance(value, FloatFormat):
        raise TypeError(f"{name} must be a FloatFormat (e.g. formats.fp16), not {value!r}")
    return value


def check_bool(name, value):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool (True or False), not {value!r}")
    return value


def check_stages(value, *, minimum=1, maximum=4, name="stages"):
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise ValueError(f"{name} must be an int in {minimum}..{maximum}, not {value!r}")
    return value


def check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, not {value!r}")
    return value


# --------------------------------------------------------------------------------------------
# Format-derived constants (the special-code constants come from the `FloatFormat` properties).

class FormatInfo:
    """Constants of one `FloatFormat` that the datapath needs, under short names.

    Attributes
    ----------
    eb, man, bias, width, p : int
        Exponent bits, stored fraction bits, bias, code width, precision (``man + 1``).
    subnormals : bool
        Gradual underflow (exponent field 0 is subnormal). Otherwise field 0 is a normal
        binade and the all-zero magnitude is zero.
    emin : int
        Unbiased exponent of the lowest normal binade (`FloatFormat.emin`).
    field_min, field_max : int
        Lowest exponent field holding normal numbers (1 or 0); all-ones exponent field.
    max_mag : int
        Magnitude (code without the sign) of the largest finite number
        (`FloatFormat.max_finite_code`).
    emax_field : int
        Exponent field of ``max_mag``.
    nan_code : int
        Canonical NaN (or NINF for merged formats) (`FloatFormat.nan_code`).
    has_inf, signed_zero : bool
        `FloatFormat.has_inf`, `FloatFormat.has_neg_zero`.
    """

    def __init__(self, fmt):
        self.fmt = fmt
        self.eb, self.man, self.bias = fmt.exp_bits, fmt.man_bits, fmt.bias
        self.width = fmt.width
        self.p = fmt.precision
        self.specials = fmt.specials
        self.subnormals = bool(fmt.subnormals)
        self.rounding = fmt.rounding
        self.overflow = fmt.overflow
        self.field_min = 1 if self.subnormals else 0
        self.field_max = fmt.exp_max_field
        self.emin = fmt.emin
        self.max_mag = fmt.max_finite_code
        self.nan_code = fmt.nan_code
        self.has_inf = fmt.has_inf
        self.signed_zero = fmt.has_neg_zero
        self.emax_field = self.max_mag >> self.man


def fmt_info(fmt):
    return FormatInfo(fmt)


def exp_width(*fmts, extra_sig=64):
    """Signed width that holds every intermediate exponent of a unit built from ``fmts``."""
    lim = 0
    for fmt in fmts:
        info = FormatInfo(fmt)
        lim = max(lim, (1 << info.eb) + info.bias + info.p + 2)
    lim = 2 * lim + extra_sig
    return lim.bit_length() + 2


# --------------------------------------------------------------------------------------------
# Internal value representation.

class Unpacked:
    """A floating-point value in flight: finite part plus special flags.

    ``value = (-1)**sign * sig * 2**(exp - (len(sig) - 1))`` when no flag is set. ``sig`` may
    have leading zeros (subnormals, products of subnormals).
    """

    FIELDS = ("sign", "exp", "sig", "zero", "inf", "nan")

    def __init__(self, *, sign, exp, sig, zero, inf, nan):
        self.sign, self.exp, self.sig = Value.cast(sign), Value.cast(exp), Value.cast(sig)
        self.zero, self.inf, self.nan = Value.cast(zero), Value.cast(inf), Value.cast(nan)

    def values(self):
        return [getattr(self, f) for f in self.FIELDS]

    def replace(self, **kw):
        d = {f: getattr(self, f) for f in self.FIELDS}
        d.update(kw)
        return Unpacked(**d)


class Pipeline:
    """Register inserter: ``pipe.cut(on, *values)`` returns the values, registered when ``on``.

    Each registered value becomes a fresh `Signal` named ``<prefix>s<k>_<i>`` in the ``sync``
    domain. `Unpacked` arguments are registered field by field.
    """

    def __init__(self, m, prefix="p"):
        self._m, self._prefix, self._count = m, prefix, 0
        self.registers = 0

    def _reg(self, v, name):
        if isinstance(v, Unpacked):
            return Unpacked(**{f: self._reg(getattr(v, f), f"{name}_{f}") for f in v.FIELDS})
        v = Value.cast(v)
        s = Signal(v.shape(), name=name)
        self._m.d.sync += s.eq(v)
        return s

    def cut(self, on, *values):
        if not on:
            return values if len(values) != 1 else values[0]
        k = self._count
        self._count += 1
        out = tuple(self._reg(v, f"{self._prefix}s{k}_{i}") for i, v in enumerate(values))
        return out if len(out) != 1 else out[0]


# --------------------------------------------------------------------------------------------
# Combinational primitives.

def lzc(value):
    """Leading-zero count of ``value`` (log-depth tree). Returns ``(count, all_zero)``;
    ``count`` is meaningless when ``all_zero``."""
    value = Value.cast(value)
    n = len(value)
    k = max(1, (n - 1).bit_length())
    padded = Cat(Const(0, (1 << k) - n), value) if (1 << k) > n else value

    def rec(v):
        if len(v) == 1:
            return Const(0, 0), ~v[0]
        h = len(v) // 2
        ch, zh = rec(v[h:])
        cl, zl = rec(v[:h])
        count = Mux(zh, Cat(cl, Const(1, 1)), Cat(ch, Const(0, 1)))
        return count, zh & zl

    count, zero = rec(padded)
    return count, zero


def _shl_keep(m, sig, cnt, keep, name):
    """Top ``keep`` bits of ``sig << cnt`` (``cnt`` at most the leading-zero count) and the
    OR of every other bit, with a log shifter that drops, level by level, the bits that can no
    longer reach the top ``keep`` positions. Returns ``(top, sticky)``."""
    n = len(sig)
    cur, cur_len = sig, n          # cur holds bits [n - cur_len, n) of the running value
    sticky = []
    for k in reversed(range(len(cnt))):
        s = 1 << k
        need = min(n, keep + s - 1)
        base = n - cur_len
        bits = []
        for j in range(n - need, n):
            shifted = cur[j - s - base] if j - s >= base else Const(0, 1)
            bits.append(Mux(cnt[k], shifted, cur[j - base]))
        lo_on, lo_off = max(n - need - s - base, 0), n - need - base
        if lo_off > 0:
            sticky.append(Mux(cnt[k], cur[:lo_on].any() if lo_on else Const(0, 1),
                              cur[:lo_off].any()))
        lvl = Signal(need, name=f"{name}_l{k}")
        m.d.comb += lvl.eq(Cat(*bits))
        cur, cur_len = lvl, need
    top = cur[cur_len - keep:]
    if cur_len > keep:
        sticky.append(cur[:cur_len - keep].any())
    return top, (Cat(*sticky).any() if sticky else Const(0, 1))


def normalize(m, exp, sig, *, name="norm", floor=None, keep=None):
    """Shift ``sig`` left so its MSB is set; adjust ``exp``. Returns ``(exp, sig)``.

    With ``floor`` (an int; the caller guarantees ``exp >= floor``) the shift stops where the
    exponent reaches ``floor``: the result is normalised, or has ``exp == floor`` and leading
    zeros (a gradual-underflow value ready for `round_pack` with ``floored=True``).
    With ``keep`` only the top ``keep`` bits are produced, plus the OR of the others as an
    extra least significant (sticky) bit: ``len(sig) == keep + 1``, enough for `round_pack`
    when ``keep >= p + max(sr_bits, 1)``.
    """
    count, _ = lzc(sig)
    n = len(sig)
    cnt = Signal(len(count), name=f"{name}_lz")
    if floor is None:
        m.d.comb += cnt.eq(count)
    else:
        room = Signal(signed(len(exp) + 1), name=f"{name}_room")
        m.d.comb += room.eq(exp - floor)
        lim = room.as_unsigned()
        m.d.comb += cnt.eq(Mux(lim < count, lim[:len(count)], count))
    if keep is None or keep >= n:
        shifted = Signal(n, name=f"{name}_sig")
        m.d.comb += shifted.eq((sig << cnt)[:n])
    else:
        top, sticky = _shl_keep(m, Value.cast(sig), cnt, keep, f"{name}_sh")
        shifted = Signal(keep + 1, name=f"{name}_sig")
        m.d.comb += shifted.eq(Cat(sticky, top))
    e = Signal(signed(len(exp) + 1), name=f"{name}_exp")
    m.d.comb += e.eq(exp - cnt)
    return e, shifted


def normalize1(m, exp, sig, *, name="norm1"):
    """`normalize` for a ``sig`` with at most one leading zero (product of normalised
    significands, or zero)."""
    sig = Value.cast(sig)
    n = len(sig)
    top = sig[n - 1]
    shifted = Signal(n, name=f"{name}_sig")
    m.d.comb += shifted.eq(Mux(top, sig, sig << 1))
    e = Signal(signed(len(exp) + 1), name=f"{name}_exp")
    m.d.comb += e.eq(exp - ~top)
    return e, shifted


def unpack_norm(m, fmt, code, *, ftz=False, name="un"):
    """`unpack` with a normalised ``sig`` (subnormals get ``exp < emin``); zeros keep
    ``sig == 0``."""
    v = unpack(fmt, code, ftz=ftz)
    if FormatInfo(fmt).subnormals and not ftz:
        exp, sig = normalize(m, v.exp, v.sig, name=name)
        v = v.replace(exp=exp, sig=sig)
    return v


def multiply_norm(m, fmt, a, b, *, ftz=False, name="mul"):
    """Exact product of two ``fmt`` codes with normalised operands: the product ``sig`` has at
    most one leading zero (finish with `normalize1`)."""
    return multiply(unpack_norm(m, fmt, a, ftz=ftz, name=f"{name}_na"),
                    unpack_norm(m, fmt, b, ftz=ftz, name=f"{name}_nb"))


def shr_sticky(value, amount, *, jam=False, m=None, name="shr"):
    """Logical right shift by unsigned ``amount`` (saturating: everything out when
    ``amount >= len(value)``).

    Returns ``(shifted, sticky)``; with ``jam`` the sticky bit is ORed into the LSB and
    ``shifted`` alone is returned. The sticky bit is collected level by level from the bits
    each stage of the log shifter pushes out. With ``m`` every level is a named `Signal`
    (keeps the simulator's expression trees small).
    """
    value = Value.cast(value)
    n = len(value)
    amount = Value.cast(amount)
    k = max(1, n.bit_length())          # 2**k > n: a k-bit amount of all ones clears value
    if len(amount) > k:
        amt = amount[:k] | amount[k:].any().replicate(k)
    else:
        amt = amount
    cur = value
    sticky = []
    for i in reversed(range(len(amt))):
        s = 1 << i
        if s >= n:
            sticky.append(amt[i] & cur.any())
            cur = Mux(amt[i], 0, cur)
        else:
            sticky.append(amt[i] & cur[:s].any())
            cur = Mux(amt[i], cur[s:], cur)
        if m is not None:
            lvl = Signal(n, name=f"{name}_l{i}")
            m.d.comb += lvl.eq(cur)
            cur = lvl
    shifted = cur[:n]
    sticky = Cat(*sticky).any()
    if jam:
        return shifted | sticky
    return shifted, sticky


def unpack(fmt, code, *, ftz=False):
    """Decode a raw ``fmt`` code into an `Unpacked` with ``len(sig) == fmt.man_bits + 1``.

    Subnormal inputs keep ``exp = emin`` and leading zeros in ``sig``; with ``ftz`` they read
    as zeros of the same sign.
    """
    info = FormatInfo(fmt)
    code = Value.cast(code)
    sign = code[info.width - 1]
    field = code[info.man:info.man + info.eb]
    frac = code[:info.man]
    mag = code[:info.width - 1]
    field_zero = field == 0
    if info.specials == "ieee":
        nan = (field == info.field_max) & (frac != 0)
        inf = (field == info.field_max) & (frac == 0)
    elif info.specials == "fn":
        nan = mag == (1 << (info.width - 1)) - 1
        inf = Const(0, 1)
    elif info.specials == "fnuz":
        nan = sign & (mag == 0)
        inf = Const(0, 1)
    else:  # merged: one NaN/Inf code, sign don't care
        nan = mag == (1 << (info.width - 1)) - 1
        inf = Const(0, 1)
    if info.subnormals:
        zero = field_zero & ((frac == 0) | ftz) & ~nan
        hidden = ~field_zero
        e = Mux(field_zero, 1, field) - info.bias
    else:
        zero = mag == 0
        hidden = Const(1, 1)
        e = field - info.bias
    if not (info.specials in ("ieee", "fn")):
        sign = sign & ~zero  # zeros of formats without -0 read as +0
    return Unpacked(sign=sign, exp=e, sig=Cat(frac, hidden), zero=zero, inf=inf, nan=nan)


def multiply(a, b):
    """Exact product of two `Unpacked` operands; ``len(sig) == len(a.sig) + len(b.sig)``."""
    nan = a.nan | b.nan | (a.inf & b.zero) | (a.zero & b.inf)
    inf = (a.inf | b.inf) & ~nan
    zero = (a.zero | b.zero) & ~nan & ~inf
    # sig_a * 2**(ea - (wa-1)) * sig_b * 2**(eb - (wb-1)) = prod * 2**(ea + eb + 1 - (wa+wb-1))
    return Unpacked(sign=a.sign ^ b.sign, exp=a.exp + b.exp + 1, sig=a.sig * b.sig,
                    zero=zero, inf=inf, nan=nan)


def add_align(m, x, y, *, width, ew, name="add", floor=None):
    """First half of `add`: swap by exponent and align the smaller significand (sticky jammed).

    With ``floor`` (an int) zero operands sit at exponent ``floor`` instead of the lowest one,
    so that the sum's exponent is at least ``floor + 1`` when every non-zero operand has
    ``exp >= floor`` or is the smaller one.

    Returns a tuple of Values to be passed (possibly through a pipeline register) to `add_sum`.
    """
    W = width
    assert W >= max(len(x.sig), len(y.sig)) + 1

    def align(v):  # MSB-align sig into the W-bit window; zeros: sig 0 and the lowest exponent
        s = Cat(Const(0, W - len(v.sig)), Mux(v.zero, 0, v.sig))
        e = Mux(v.zero, -(1 << (ew - 2)) if floor is None else floor, v.exp)
        return e, s

    ex, sx = align(x)
    ey, sy = align(y)
    dxy = Signal(signed(ew + 1), name=f"{name}_dxy")
    dyx = Signal(signed(ew + 1), name=f"{name}_dyx")
    m.d.comb += [dxy.eq(ex - ey), dyx.eq(ey - ex)]
    swap = Signal(name=f"{name}_swap")
    m.d.comb += swap.eq(dxy[-1])
    e_big = Signal(signed(ew), name=f"{name}_ebig")
    s_big = Signal(W, name=f"{name}_sbig")
    s_small = Signal(W, name=f"{name}_ssmall")
    sign_big = Signal(name=f"{name}_signbig")
    sign_small = Signal(name=f"{name}_signsmall")
    diff = Signal(ew + 1, name=f"{name}_diff")
    m.d.comb += [
        e_big.eq(Mux(swap, ey, ex)),
        s_big.eq(Mux(swap, sy, sx)),
        s_small.eq(Mux(swap, sx, sy)),
        sign_big.eq(Mux(swap, y.sign, x.sign)),
        sign_small.eq(Mux(swap, x.sign, y.sign)),
        diff.eq(Mux(swap, dyx, dxy)),
    ]
    aligned = Signal(W, name=f"{name}_aligned")
    m.d.comb += aligned.eq(shr_sticky(s_small, diff, jam=True, m=m, name=f"{name}_shr"))
    nan = x.nan | y.nan | (x.inf & y.inf & (x.sign ^ y.sign))
    inf = (x.inf | y.inf) & ~nan
    inf_sign = Mux(x.inf, x.sign, y.sign)
    zero_sign = x.zero & y.zero & x.sign & y.sign
    return (e_big, s_big, aligned, sign_big, sign_big ^ sign_small, nan, inf, inf_sign,
            zero_sign)


def add_sum(m, aligned_values, *, name="add"):
    """Second half of `add`: add/subtract, take the magnitude. Returns an `Unpacked` whose
    ``sig`` has ``width + 1`` bits and may have leading zeros (normalise before `round_pack`).
    Exact cancellation gives ``+0``; ``+-0 + +-0`` gives ``-0`` only for two negative zeros."""
    e_big, s_big, aligned, sign_big, sub, nan, inf, inf_sign, zero_sign = aligned_values
    W = len(s_big)
    # s_big +- aligned in one carry chain (carry-in through a doubled LSB) and, in parallel,
    # aligned - s_big for the case where the difference is negative
    t = Signal(W, name=f"{name}_t")
    m.d.comb += t.eq(aligned ^ sub.replicate(W))
    d1 = Signal(W + 2, name=f"{name}_d1")
    m.d.comb += d1.eq(Cat(sub, s_big) + Cat(sub, t))
    d2 = Signal(W + 2, name=f"{name}_d2")
    m.d.comb += d2.eq(Cat(Const(1, 1), aligned) + Cat(Const(1, 1), ~s_big))
    neg = sub & ~d1[W + 1]
    mag = Signal(W + 1, name=f"{name}_mag")
    m.d.comb += mag.eq(Mux(sub, Cat(Mux(neg, d2[1:W + 1], d1[1:W + 1]), Const(0, 1)),
                           d1[1:]))
    is_zero = (mag == 0) & ~nan & ~inf
    sign = Mux(inf, inf_sign, Mux(is_zero, zero_sign, sign_big ^ neg))
    return Unpacked(sign=sign, exp=e_big + 1, sig=mag, zero=is_zero, inf=inf, nan=nan)


def add(m, x, y, *, width, ew, name="add", floor=None):
    """Sum of two `Unpacked` operands, exact up to a jammed sticky bit (module docstring).

    ``width`` is the alignment window: at least ``max(len(x.sig), len(y.sig)) + 1`` and at least
    ``p_out + sr_bits + 3``.
    """
    return add_sum(m, add_align(m, x, y, width=width, ew=ew, name=name, floor=floor),
                   name=name)


def special_codes(info, sign):
    """Return ``(zero, inf_or_overflow, saturated)`` code Values for ``sign``."""
    w = info.width
    zero = Cat(Const(0, w - 1), sign) if info.signed_zero else Const(0, w)
    if info.has_inf:
        inf = Cat(Const(info.field_max << info.man, w - 1), sign)
    else:
        inf = Const(info.nan_code, w)
    sat = Cat(Const(info.max_mag, w - 1), sign)
    return zero, inf, sat


def underflow_floor(fmt, ftz=False):
    """The exponent floor for `normalize`/`add_align`/`round_pack` (``floored``): ``emin`` for
    gradual underflow, else ``None`` (full-precision normalisation needed)."""
    info = FormatInfo(fmt)
    return info.emin if info.subnormals and not ftz else None


def round_pack(m, fmt, v, *, ftz=False, overflow=None, rounding=None, rand=None, sr_bits=0,
               name="rnd", floored=False):
    """Round the finite part of ``v`` (``sig`` normalised: MSB set unless ``v.zero``) into a
    ``fmt`` code and apply special flags. Returns the code Value (``fmt.width`` bits).

    Parameters
    ----------
    ftz : bool
        Flush results below the smallest normal (after rounding) to zero.
    overflow : "inf" | "saturate" | None
        Overflow policy; ``None`` uses ``fmt.overflow``.
    rounding : "rne" | "rnu" | "sr" | None
        ``None`` uses ``fmt.rounding``. ``"sr"`` needs ``rand`` (``sr_bits`` wide): round up in
        magnitude iff ``floor(discarded * 2**sr_bits) + rand >= 2**sr_bits``.
    floored : bool
        ``v`` comes from ``normalize(..., floor=underflow_floor(fmt, ftz))``: ``exp >= emin``
        and ``sig`` is normalised unless ``exp == emin``, so no denormalising shift is needed.
    """
    info = FormatInfo(fmt)
    overflow = info.overflow if overflow is None else overflow
    rounding = info.rounding if rounding is None else rounding
    man, p, eb = info.man, info.p, info.eb
    sig = Value.cast(v.sig)
    d = sr_bits if rounding == "sr" else 0
    need = p + max(d, 1) + 1
    if len(sig) < need:
        sig = Cat(Const(0, need - len(sig)), sig)
    W = len(sig)
    ew = max(len(v.exp) + 2, eb + 4)
    gradual = info.subnormals and not ftz
    if floored and underflow_floor(fmt, ftz) is None:
        raise ValueError("floored=True needs a gradual-underflow format without ftz")

    if gradual and not floored:
        be = Signal(signed(ew), name=f"{name}_be")
        m.d.comb += be.eq(v.exp + info.bias)
        under = be < 1
        s = Signal(ew, name=f"{name}_dshift")
        m.d.comb += s.eq(Mux(under, 1 - be, 0))
        sig_d, st = shr_sticky(sig, s, m=m, name=f"{name}_dsh")
        exp_eff = Mux(under, info.emin, v.exp)
    else:
        sig_d, st = sig, Const(0, 1)
        exp_eff = v.exp
    kept = sig_d[W - p:]
    rest = sig_d[:W - p]
    guard = rest[-1]
    low = rest[:-1].any() | st
    if rounding == "rne":
        up = guard & (low | kept[0])
    elif rounding == "rnu":
        up = guard
    elif rounding == "sr":
        top = rest[-d:]
        up = (top + rand)[d]
    else:
        raise ValueError(f"rounding must be 'rne', 'rnu' or 'sr', not {rounding!r}")
    # exponent field of the truncated value (the hidden bit carries into it), then a narrow
    # increment: the code magnitude is Cat(fraction, field) + up
    fe = Signal(signed(ew), name=f"{name}_fe")
    ex = Signal(signed(ew), name=f"{name}_ex")
    m.d.comb += ex.eq(exp_eff)
    # exp + (bias - 1) + hidden in one carry chain: the hidden bit enters as the carry-in
    m.d.comb += fe.eq((Cat(kept[man], ex) + Cat(kept[man], Const(info.bias - 1, ew)))[1:])
    neg = fe[-1]
    big = ~neg & (fe[eb:] != 0)               # field >= 2**eb: overflow whatever the fraction
    mag = Signal(eb + man + 1, name=f"{name}_mag")
    m.d.comb += mag.eq(Cat(kept[:man], fe[:eb]) + up)

    zero_c, inf_c, sat_c = special_codes(info, v.sign)
    if gradual:
        flush = ~neg & ~big & (mag == 0)      # fe >= 0 here (exp_eff >= emin)
    elif info.subnormals:
        flush = neg | (~big & (mag < (1 << man)))
    else:
        flush = neg | (~big & (mag == 0))
    ovf = ~neg & (big | (mag > info.max_mag))
    nan_c = Const(info.nan_code, info.width)
    finite = Cat(mag[:info.width - 1], v.sign)
    code = Signal(info.width, name=f"{name}_code")
    with m.If(v.nan):
        m.d.comb += code.eq(nan_c)
    with m.Elif(v.inf):
        m.d.comb += code.eq(inf_c)
    with m.Elif(v.zero | flush):
        m.d.comb += code.eq(zero_c)
    with m.Elif(ovf):
        m.d.comb += code.eq(inf_c if overflow == "inf" else sat_c)
    with m.Else():
        m.d.comb += code.eq(finite)
    return code


def plan_cuts(stages, preference, *, fixed=1):
    """Place ``stages - fixed`` registers: cut points from ``preference`` first (in order),
    then extra registers on the inputs. Returns ``(set_of_cut_names, n_input_registers)``."""
    n = stages - fixed
    chosen = set(preference[:max(n, 0)])
    return chosen, max(n - len(preference), 0)


def register_inputs(m, values, n, name="in"):
    """Delay each Value of ``values`` by ``n`` registers; returns the delayed list."""
    out = list(values)
    for k in range(n):
        regs = []
        for i, v in enumerate(out):
            v = Value.cast(v)
            r = Signal(v.shape(), name=f"{name}{k}_{i}")
            m.d.sync += r.eq(v)
            regs.append(r)
        out = regs
    return out


def check_sr_bits(value):
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 32:
        raise ValueError(f"sr_bits must be an int in 0..32 (0 = round to nearest), not "
                         f"{value!r}")
    return value

"""The fixed-point format descriptor (hdl/arith/fixed.py) against exact rationals."""

from fractions import Fraction

import numpy as np
import pytest

from tessera.hdl.arith.fixed import FixedFormat


@pytest.mark.parametrize("ib,fb", [(3, 0), (1, 4), (6, -2), (6, -1), (0, 5), (-2, 6)])
def test_quantizer_is_round_to_nearest_ties_up_with_saturation(ib, fb):
    f = FixedFormat(ib, fb)
    assert f.bits == 1 + ib + fb and f.lsb == Fraction(2) ** -fb
    rng = np.random.default_rng(abs(ib) * 10 + fb)
    x = rng.uniform(float(f.min_value) * 1.5 - 1, float(f.max_value) * 1.5 + 1, 2000)
    ties = (np.arange(f.min_int, f.max_int) + 0.5) * float(f.lsb)
    x = np.concatenate([x, ties])
    got = f.quantize_int(x)
    for xi, q in zip(x, got):
        fx = Fraction(float(xi)) / f.lsb
        want = min(max(int(np.floor(fx + Fraction(1, 2))), f.min_int), f.max_int)
        assert q == want
    np.testing.assert_array_equal(f.from_code(f.quantize(x)), got)
    np.testing.assert_array_equal(f.value(got), [float(f.exact(q)) for q in got])


def test_codes_are_twos_complement():
    f = FixedFormat(3, 1)
    q = np.arange(f.min_int, f.max_int + 1)
    np.testing.assert_array_equal(f.to_code(q), [v % 32 for v in q])
    np.testing.assert_array_equal(f.from_code(f.to_code(q)), q)
    u = FixedFormat(4, 0, signed=False)
    assert (u.bits, u.min_int, u.max_int) == (4, 0, 15)


def test_descriptor_and_errors():
    assert FixedFormat(6, -2).as_dict() == {"kind": "fixed", "bits": 5, "int_bits": 6,
                                            "frac_bits": -2, "signed": True}
    assert str(FixedFormat(3, 2)) == "s3.2"
    with pytest.raises(ValueError, match=r"^FixedFormat\.frac_bits must be an integer in "
                                         r"-16\.\.32, not 40$"):
        FixedFormat(1, 40)
    with pytest.raises(ValueError, match=r"^FixedFormat bits \(signed \+ int_bits \+ "
                                         r"frac_bits\) must be in 1\.\.48, not 0$"):
        FixedFormat(-3, 2)

import numpy as np
import pytest
from numpy.testing import assert_allclose

from l1recal.schema import MUON_HW_ETA, MUON_HW_PHI, MUON_HW_PT, TWO_PI
from l1recal.units import (
    charge_from_sign,
    muon_eta,
    muon_phi_rad,
    muon_pt_gev,
    sign_from_charge,
    wrap_delta_phi,
    wrap_phi_positive,
)


def test_muon_bin_widths():
    assert MUON_HW_PT.bin_width == 0.5
    assert MUON_HW_ETA.bin_width == pytest.approx(0.010875)
    assert MUON_HW_PHI.bin_width == pytest.approx(TWO_PI / 576)


def test_muon_conversions_hand_values():
    assert_allclose(muon_pt_gev([0, 11, 90, 511]), [0.0, 5.5, 45.0, 255.5])
    assert_allclose(muon_eta([-256, 0, 225]), [-2.784, 0.0, 2.446875])
    assert_allclose(
        muon_phi_rad([0, 144, 288, 575]), [0.0, np.pi / 2, np.pi, TWO_PI * 575 / 576]
    )


def test_charge_sign_round_trip():
    assert_allclose(charge_from_sign([0, 1]), [1, -1])
    assert_allclose(sign_from_charge([1, -1]), [0, 1])


@pytest.mark.parametrize(
    ("dphi", "expected"),
    [
        (0.0, 0.0),
        (np.pi - 1e-9, np.pi - 1e-9),
        (np.pi + 0.1, -np.pi + 0.1),
        (-np.pi - 0.1, np.pi - 0.1),
        (TWO_PI - 0.01, -0.01),
        (-(TWO_PI - 0.01), 0.01),
        (3 * TWO_PI + 0.2, 0.2),
    ],
)
def test_wrap_delta_phi(dphi, expected):
    assert_allclose(wrap_delta_phi(dphi), expected, atol=1e-12)


def test_wrap_delta_phi_range_is_half_open():
    assert wrap_delta_phi(np.pi) == pytest.approx(-np.pi)


def test_wrap_phi_positive_at_edges():
    assert_allclose(
        wrap_phi_positive([-np.pi, -1e-3, 0.0, TWO_PI, TWO_PI + 0.5]),
        [np.pi, TWO_PI - 1e-3, 0.0, 0.0, 0.5],
    )


def test_difference_across_zero_is_small():
    # A muon just above 0 in L1 and just below 2 pi offline differ by 0.02 rad, not 2 pi.
    assert_allclose(wrap_delta_phi(0.01 - (TWO_PI - 0.01)), 0.02, atol=1e-12)

"""Fixed-point type strings of the HLS firmware: ``ap_fixed<W,I>`` and ``ap_ufixed<W,I>``.

W is the total width in bits and I the integer bits including the sign bit of
a signed type, so ``ap_fixed<16,6>`` spans [-32, 32) in steps of 2^-10.
Optional quantisation and overflow modes (``ap_fixed<16,6,AP_RND,AP_SAT>``)
are kept as written.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from l1recal.errors import ConfigError

_FIXED = re.compile(
    r"^\s*(?:ap_)?(?P<unsigned>u?)fixed\s*<\s*(?P<width>\d+)\s*,\s*(?P<integer>-?\d+)"
    r"(?P<modes>(?:\s*,\s*\w+)*)\s*>\s*$"
)


@dataclass(frozen=True)
class FixedType:
    """A parsed fixed-point type.

    Attributes:
        width: total bits W.
        integer: integer bits I, including the sign bit when signed.
        signed: False for ``ap_ufixed``.
        modes: the quantisation and overflow modes as written, e.g. ``("AP_RND", "AP_SAT")``.
    """

    width: int
    integer: int
    signed: bool = True
    modes: tuple[str, ...] = ()

    @property
    def fractional(self) -> int:
        """Fractional bits W - I."""
        return self.width - self.integer

    def with_integer_bits(self, integer: int) -> FixedType:
        """Return the type with ``integer`` integer bits and the same fractional bits."""
        return FixedType(integer + self.fractional, integer, self.signed, self.modes)

    def __str__(self) -> str:
        name = "ap_fixed" if self.signed else "ap_ufixed"
        modes = "".join(f",{mode}" for mode in self.modes)
        return f"{name}<{self.width},{self.integer}{modes}>"


def parse_fixed(text: str) -> FixedType:
    """Parse ``ap_fixed<W,I[,Q,O]>`` (``ap_`` optional, ``ufixed`` for unsigned).

    Raises:
        ConfigError: when ``text`` is not such a type or W is outside 1..64.
    """
    match = _FIXED.match(text)
    if match is None:
        raise ConfigError(
            f"invalid fixed-point type {text!r}; expected ap_fixed<W,I> such as ap_fixed<16,6>"
        )
    width, integer = int(match["width"]), int(match["integer"])
    if not 1 <= width <= 64:
        raise ConfigError(
            f"fixed-point type {text!r}: total width {width} is outside 1..64 bits"
        )
    modes = tuple(part.strip() for part in match["modes"].split(",") if part.strip())
    return FixedType(width, integer, not match["unsigned"], modes)


def integer_bits_for(max_abs: float, signed: bool = True) -> int:
    """Return the integer bits (sign included) that hold values up to ``max_abs`` without overflow."""
    if not math.isfinite(max_abs) or max_abs <= 0:
        return 1 if signed else 0
    # A signed type with I integer bits represents [-2^(I-1), 2^(I-1)).
    bits = math.floor(math.log2(max_abs)) + 1
    return bits + 1 if signed else bits


def widen_to_fit(base: FixedType, max_abs: float) -> FixedType:
    """Return ``base``, or ``base`` with more integer bits when ``max_abs`` would overflow it."""
    needed = integer_bits_for(max_abs, base.signed)
    if needed <= base.integer:
        return base
    return base.with_integer_bits(needed)

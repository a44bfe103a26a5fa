"""The range of reading timestamps the service accepts, on every interface.

From 1700-01-01T00:00:00Z (historical series forecasters backtest on, yearly sunspots from
1700 or monthly airline passengers from 1949, still fit) up to, not including,
2200-01-01T00:00:00Z. Without an upper bound a reading in year 9999 was accepted and its
forecast steps fell past year 9999, which no RFC 3339 time can name; the stream was stuck
there, every later real reading a duplicate. The bound also catches milliseconds sent as
seconds (1.8e12 is the year 58,000).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Final

import numpy as np
import numpy.typing as npt

from service.errors import InvalidInput

#: Earliest accepted timestamp, epoch seconds: 1700-01-01T00:00:00Z.
EARLIEST: Final = -8_520_336_000.0
#: First timestamp no longer accepted, epoch seconds: 2200-01-01T00:00:00Z.
LATEST: Final = 7_258_118_400.0
#: The range in words, for messages and documentation.
RANGE: Final = "from 1700-01-01T00:00:00Z up to (not including) 2200-01-01T00:00:00Z"


def in_range(timestamp: float) -> bool:
    """Whether a reading may carry ``timestamp`` (epoch seconds); NaN never may."""
    return EARLIEST <= timestamp < LATEST


def outside(timestamps: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """``in_range`` negated, element by element (NaN is outside)."""
    with np.errstate(invalid="ignore"):
        return ~((timestamps >= EARLIEST) & (timestamps < LATEST))


def out_of_range(timestamp: float, field: str) -> InvalidInput:
    """The error for a finite ``timestamp`` outside the range, naming ``field``."""
    return InvalidInput(f"timestamp {_shown(timestamp)} is outside the range {RANGE}", field=field)


def _shown(timestamp: float) -> str:
    if math.isfinite(timestamp) and -62_135_596_800.0 <= timestamp < 253_402_300_800.0:
        text = datetime.fromtimestamp(timestamp, tz=UTC).isoformat()
        return text.replace("+00:00", "Z")
    return f"{timestamp:g} (epoch seconds)"


__all__ = ["EARLIEST", "LATEST", "RANGE", "in_range", "out_of_range", "outside"]

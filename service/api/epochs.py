"""Epoch seconds of request times, exactly as the pydantic models read them into ``datetime``.

Numbers are seconds, or milliseconds above 2e10, to the microsecond and rounded half up (the
fraction of a number above 2e10 taken as milliseconds, as pydantic-core does); a vectorized
rule covers the numbers of the years 1970-2198, and everything else (text, other numbers)
goes through pydantic itself. The tests check the rule against pydantic.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from datetime import datetime

import numpy as np
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticError

from service.api.requests import epoch
from service.core.observations import TimeArray


class Unreadable(Exception):
    """A time the pydantic models refuse: the caller lets them word the refusal."""


_DATETIME = TypeAdapter(datetime)
#: Epoch numbers the vectorized rule below is exact for: seconds up to the year 2255 (past
#: that, microseconds exceed float64's 2**53) and milliseconds up to the year 2198.
_SECONDS_LIMIT = 9e9
_MS_LIMIT = 7.2e12
_MS_WATERSHED = 2e10
#: Where the fast rule's milliseconds begin. pydantic-core versions disagree about numbers
#: in (2e10, 2e10 + 1): up to 2.46 their whole part decides (seconds), from 2.50 the number
#: itself (milliseconds). Those go through pydantic, so the answer is whatever it says.
_MS_FAST_FROM = _MS_WATERSHED + 1


def _fast(numbers: np.ndarray) -> np.ndarray:
    return (numbers >= 0) & (
        (numbers < _SECONDS_LIMIT) | ((numbers >= _MS_FAST_FROM) & (numbers < _MS_LIMIT))
    )


def _epochs_of_numbers(numbers: np.ndarray) -> TimeArray:
    """Epoch seconds of non-negative numbers, as pydantic reads them into a ``datetime``.

    Seconds, or milliseconds above 2e10; microsecond precision, rounded half up (the
    fraction of a number above 2e10 is taken as milliseconds, as pydantic-core does).
    """
    whole = np.floor(numbers)
    fraction = numbers - whole
    scaled = np.where(numbers > _MS_WATERSHED, fraction * 1000.0, fraction * 1e6)
    rounded = np.floor(scaled)
    micros = (rounded + ((scaled - rounded) >= 0.5)).astype(np.int64)
    units = whole.astype(np.int64)
    ms = units > int(_MS_WATERSHED)
    seconds = np.where(ms, units // 1000, units)
    micros += np.where(ms, (units % 1000) * 1000, 0)
    return np.asarray((seconds * 1_000_000 + micros) / 1e6, dtype=np.float64)


@functools.lru_cache(maxsize=4096)
def _epoch_of(value: float | str) -> float:
    """One time through pydantic itself (text, and numbers outside the fast rule's range)."""
    try:
        return epoch(_DATETIME.validate_python(value))
    except PydanticError:
        raise Unreadable from None


def _epoch_of_number(number: float) -> float:
    """``_epochs_of_numbers`` for one number, in plain Python (the same IEEE operations)."""
    whole = math.floor(number)
    fraction = number - whole
    scaled = fraction * 1000.0 if number > _MS_WATERSHED else fraction * 1e6
    rounded = math.floor(scaled)
    micros = rounded + (1 if scaled - rounded >= 0.5 else 0)
    units = int(whole)
    if units > int(_MS_WATERSHED):
        units, extra = divmod(units, 1000)
        micros += extra * 1000
    return (units * 1_000_000 + micros) / 1e6


def _is_fast(number: float) -> bool:
    return 0 <= number < _SECONDS_LIMIT or _MS_FAST_FROM <= number < _MS_LIMIT


def epochs(values: Sequence[float | str]) -> TimeArray:
    """Epoch seconds of the times of a body, exactly as the pydantic models read them."""
    if len(values) == 1:
        (value,) = values
        if type(value) is float and _is_fast(value):
            return np.array([_epoch_of_number(value)])
    if all(type(v) is float for v in values):
        numbers = np.array(values, dtype=np.float64)
        if _fast(numbers).all():
            return _epochs_of_numbers(numbers)
    out = np.empty(len(values), dtype=np.float64)
    for i, value in enumerate(values):
        if type(value) is float and _is_fast(value):
            out[i] = _epoch_of_number(value)
        else:
            out[i] = _epoch_of(value)
    return out

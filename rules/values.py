"""Run-time values of the compiled evaluator: what counts as a number, a string, a boolean.

A twin holds JSON values. The language sees three kinds of scalars: numbers (int
or float, never bool, always computed as finite floats), strings and booleans.
Anything else (null, objects, arrays, non-finite or enormous numbers) used where
a scalar is needed is MISSING. None of these functions raises on any input.
"""

from __future__ import annotations

import math

from rules.context import MISSING, Missing

Scalar = float | str | bool


def as_number(value: object) -> float | Missing:
    """`value` as a finite float, or MISSING."""
    if type(value) is float:
        return value if math.isfinite(value) else MISSING
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            return MISSING
    return MISSING


def as_scalar(value: object) -> Scalar | Missing:
    """`value` as a number (float), string or boolean, or MISSING."""
    if type(value) is str or type(value) is bool:
        return value
    return as_number(value)


def finite(number: float) -> float | Missing:
    """`number`, or MISSING when an operation overflowed to infinity."""
    return number if math.isfinite(number) else MISSING


def truth(value: object) -> bool | Missing:
    """`value` as a boolean, or MISSING when it is not one."""
    return value if type(value) is bool else MISSING


def equal(left: object, right: object) -> bool | Missing:
    """`left == right` when both are scalars of the same kind; otherwise MISSING."""
    a, b = as_scalar(left), as_scalar(right)
    if a is MISSING or b is MISSING or type(a) is not type(b):
        return MISSING
    return a == b


def same(left: object, right: object) -> bool:
    """Whether two raw twin values are the same, for `changed`: kinds must match too."""
    if left is MISSING or right is MISSING:
        return left is right
    numbers = (int, float)
    if type(left) in numbers and type(right) in numbers:
        return left == right
    return type(left) is type(right) and left == right

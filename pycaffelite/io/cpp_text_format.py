"""Protobuf text format as C++'s `TextFormat::Print` writes it, which is how Caffe writes
prototxt files (its upgrade tools, for instance).

Python's `text_format.MessageToString` lays messages out the same way (fields in number order,
two spaces of indentation per level, `name {` ... `}` for messages, strings C-escaped with octal
for bytes outside printable ASCII) but spells numbers differently: Python writes the float 1 as
`1.0`, 1e6 as `1000000.0` and 1.0000001f as `1.0000001`, where C++ writes `1`, `1e+06` and
`1.00000012`. C++ prints a float with printf's `%.6g` when that reads back as the same float
and with `%.9g` otherwise; a double with `%.15g`, else `%.17g`; infinities as `inf`/`-inf` and
every NaN as `nan`. This module writes messages with those rules.

Unknown fields are not printed: a message parsed from text has none.
"""
import math
from fractions import Fraction

import numpy as np
from google.protobuf import text_encoding
from google.protobuf.descriptor import FieldDescriptor

_INDENT = "  "


def message_to_text(message):
    """The text of `message` as C++'s TextFormat::Print writes it."""
    lines = []
    _print_fields(message, "", lines)
    return "".join(lines)


def float_text(value):
    """A float field's value as C++ prints it (`value` holds a float32)."""
    special = _special(value)
    if special:
        return special
    short = f"{value:.6g}"
    return short if _reads_back_as_float32(short, value) else f"{value:.9g}"


def double_text(value):
    """A double field's value as C++ prints it."""
    special = _special(value)
    if special:
        return special
    short = f"{value:.15g}"
    return short if float(short) == value else f"{value:.17g}"


def _print_fields(message, indent, lines):
    for field, value in message.ListFields():
        for item in (value if field.is_repeated else [value]):
            if field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
                lines.append(f"{indent}{field.name} {{\n")
                _print_fields(item, indent + _INDENT, lines)
                lines.append(f"{indent}}}\n")
            else:
                lines.append(f"{indent}{field.name}: {_scalar_text(field, item)}\n")


def _scalar_text(field, value):
    kind = field.cpp_type
    if kind == FieldDescriptor.CPPTYPE_ENUM:
        enum_value = field.enum_type.values_by_number.get(value)
        return enum_value.name if enum_value is not None else str(value)
    if kind == FieldDescriptor.CPPTYPE_STRING:
        data = value.encode("utf-8") if isinstance(value, str) else value
        return f'"{text_encoding.CEscape(data, False)}"'
    if kind == FieldDescriptor.CPPTYPE_BOOL:
        return "true" if value else "false"
    if kind == FieldDescriptor.CPPTYPE_FLOAT:
        return float_text(value)
    if kind == FieldDescriptor.CPPTYPE_DOUBLE:
        return double_text(value)
    return str(value)


def _special(value):
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return None


def _reads_back_as_float32(text, value):
    """Whether C's strtof(text) gives the float32 `value`: the decimal number lies in the
    interval of reals that round (to nearest, ties to even) to `value`. Exact; parsing to a
    double first and then to float32 could round twice."""
    exact = Fraction(text)
    single = np.float32(value)
    centre = Fraction(float(single))
    with np.errstate(over="ignore"):  # the neighbour of the largest float is infinite
        below = np.nextafter(single, np.float32(-np.inf))
        above = np.nextafter(single, np.float32(np.inf))
    # Past the largest float, strtof rounds to infinity from half an ulp on.
    low = (centre + Fraction(float(below))) / 2 if np.isfinite(below) else None
    high = (centre + Fraction(float(above))) / 2 if np.isfinite(above) else None
    if low is None:
        low = centre - (high - centre)
    if high is None:
        high = centre + (centre - low)
    if low < exact < high:
        return True
    ties_here = int(single.view(np.uint32)) % 2 == 0
    return ties_here and exact in (low, high)

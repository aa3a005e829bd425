"""Turning protobuf's text-format parse errors into advice about the user's file.

protobuf reports where it stopped and what it expected; the cause is often elsewhere. A `{` left
open makes every later field land in the wrong message ("unknown field" far below the real
mistake); a field from a Caffe fork is unknown however it is spelled. So the text is scanned for
its `{ }` blocks (`_Blocks`): an unknown field that belongs to an enclosing message, or the end of
the file inside a block, is reported at the `{` that was not closed, and fork fields are named
for what they are (`pycaffelite.forks`) before any spelling guess.
"""
import bisect
import difflib
import re

from pycaffelite import forks
from pycaffelite.proto import caffe_pb2

_PACKAGE = caffe_pb2.DESCRIPTOR.package + "."

_NO_FIELD = re.compile(r'Message type "([\w.]+)" has no field named "([^"]+)"')
_NO_ENUM_VALUE = re.compile(r'Enum type "([\w.]+)" has no value named (\w+)')
_REPEATED = re.compile(r'Message type "([\w.]+)" should not have multiple "(\w+)" fields')
_OUT_OF_RANGE = re.compile(r"Value out of range: (\S+)")

# Comments, quoted strings, braces and identifiers: what the block scan needs to see.
_TOKENS = re.compile(r"""#[^\n]*|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|[{}]|[A-Za-z_]\w*""")


def describe(error, text, message, source_name):
    """One message for a `text_format.ParseError` of `text` parsed into `message`."""
    line, col = error.GetLine(), error.GetColumn()
    detail = re.sub(r"^\d+:\d+ : ", "", str(error))
    lines = text.splitlines()
    if 0 < line <= len(lines):
        quoted = f"'{lines[line - 1]}': "
        if detail.startswith(quoted):
            detail = detail[len(quoted):]
    blocks = _Blocks(text, message.DESCRIPTOR, line, col)
    unclosed = blocks.unclosed_advice(detail.rstrip("."))
    if unclosed:
        return f"{source_name}:{unclosed}"
    return f"{source_name}:{line}:{col}: {_advice(detail.rstrip('.'), message, blocks)}"


class _Blocks:
    """The `{ }` blocks of a text proto up to the parse error at `line`:`col` (1-based).

    `open` lists the blocks still open there, outermost first, and `closed` the blocks closed
    before it, in order; each block is a dict with the field `name` before its `{`, where the
    `{` is (`line`, `col`), the indentation of that line (`indent`), the message type it holds
    (`type`, None where unknown), the block around it (`parent`) and, when closed by a `}` that
    starts its line, that line's indentation (`close_indent`). `open_at_end` lists the blocks
    the text leaves open.
    """

    def __init__(self, text, root, line, col):
        self.text = text
        self._line_starts = [0] + [m.end() for m in re.finditer(r"\n", text)]
        self.error_offset = self._offset(line, col)
        self.error_line = line
        self.root = root
        self.open, self.closed = [], []
        self.unmatched_close = False  # a `}` up to the error closes no `{`
        self.last_token = 0  # offset of the last token of the text
        self._scan()

    def _offset(self, line, col):
        line = min(max(line, 1), len(self._line_starts))
        return self._line_starts[line - 1] + max(col, 1) - 1

    def _position(self, offset):
        line = bisect.bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1

    def _indent(self, line):
        start = self._line_starts[line - 1]
        rest = self.text[start:]
        return len(rest) - len(rest.lstrip(" \t"))

    def _first_on_line(self, offset):
        line, col = self._position(offset)
        return col - 1 == self._indent(line)

    def _scan(self):
        stack, name = [], None
        for match in _TOKENS.finditer(self.text):
            token, offset = match.group(), match.start()
            if token.startswith("#"):
                continue
            self.last_token = offset
            before = offset < self.error_offset
            if token == "{":
                line, col = self._position(offset)
                holder = stack[-1]["type"] if stack else self.root
                field = holder.fields_by_name.get(name) if holder is not None and name else None
                block = {"name": name or "?", "line": line, "col": col, "indent": self._indent(line),
                         "type": field.message_type if field is not None else None,
                         "parent": stack[-1] if stack else None}
                stack.append(block)
            elif token == "}":
                if not stack:
                    self.unmatched_close |= offset <= self.error_offset
                    continue
                block = stack.pop()
                if before:
                    if self._first_on_line(offset):
                        block["close_indent"] = self._indent(self._position(offset)[0])
                    self.closed.append(block)
            elif token[0] not in "\"'":
                name = token
            if before:
                self.open = list(stack)
        self.open_at_end = list(stack)

    # -- advice ----------------------------------------------------------------------------------
    def unclosed_advice(self, detail):
        """`line:col: ...` at a `{` left open, when that explains the parse error; else None.

        An unknown field that belongs to an enclosing message is reported at the block that
        swallowed it when the indentation shows which one that is (a child whose `}` sits at
        its parent's indentation, or an open block starting at or right of the field), else
        at the field with both readings (a missing `}` or a misplaced field); the end of the
        file inside blocks lists them."""
        match = _NO_FIELD.fullmatch(detail)
        if match and self.open:
            field = match.group(2)
            outer = [b["type"] for b in self.open[:-1]] + [self.root]
            owner = next((t for t in outer if t is not None and field in t.fields_by_name), None)
            if owner is None:
                return None
            inner = self.open[-1]
            block = self._suspect([inner]) or self._open_at_or_right_of_error()
            if block is None:
                line, col = self._position(self.error_offset)
                return (f'{line}:{col}: "{field}" is a field of {owner.name}, not of '
                        f"{_type_name_of(inner)} ({_describe(inner)}, opened at line "
                        f'{inner["line"]} col {inner["col"]}); a "}}" is missing before it, or '
                        f"it is misplaced")
            return (f'{block["line"]}:{block["col"]}: the "{{" of {block["name"]} opened here is '
                    f'not closed, so "{field}" on line {self.error_line} is read inside '
                    f"{_describe(inner)}, where it is not a field; add the missing \"}}\"")
        if detail == 'Expected "}"' and self.open_at_end and self.error_offset >= self.last_token:
            blocks = self.open_at_end[::-1]
            listed = "; ".join(f"{_describe(b)} opened at line {b['line']} col {b['col']}"
                               for b in blocks[:3])
            first = self._suspect(blocks) or blocks[0]
            missing = f'{len(blocks)} "}}" are' if len(blocks) > 1 else 'a "}" is'
            return (f"{first['line']}:{first['col']}: the file ends inside {listed}: {missing} "
                    f"missing (look first at the block opened here)")
        return None

    def _open_at_or_right_of_error(self):
        """The innermost open block whose `{` line is indented at least as far as the error's
        line, when the error starts its line (a field written where its block had ended)."""
        if not self._first_on_line(self.error_offset):
            return None
        indent = self._indent(self.error_line)
        return next((b for b in reversed(self.open)
                     if b["line"] < self.error_line and b["indent"] >= indent), None)

    def _suspect(self, parents):
        """The last block closed inside one of `parents` by a `}` at a smaller indentation than
        its own `{` line: most likely its `}` is missing and it took its parent's."""
        for block in reversed(self.closed):
            if ("close_indent" in block and block["close_indent"] < block["indent"]
                    and any(block["parent"] is parent for parent in parents)):
                return block
        return None

    def innermost_type(self):
        """The message type of the innermost block open at the error, or the root's."""
        return self.open[-1]["type"] if self.open else self.root

    def field_before_error(self):
        """The last identifier before the error position (the field a bad value belongs to)."""
        name = None
        for match in _TOKENS.finditer(self.text, 0, self.error_offset):
            token = match.group()
            if token[0] not in "#\"'{}":
                name = token
        return name


def find_word(text, words):
    """(line, col) of the first bare word of `words` (any case) outside comments and quoted
    strings, or None."""
    for match in _TOKENS.finditer(text):
        if match.group().lower() in words:
            offset = match.start()
            line = text.count("\n", 0, offset) + 1
            return line, offset - (text.rfind("\n", 0, offset) + 1) + 1
    return None


def _describe(block):
    return f"{block['name']} {{ }}"


def _type_name_of(block):
    return block["type"].name if block["type"] is not None else f"{block['name']}'s message"


def _advice(detail, message, blocks):
    match = _NO_FIELD.fullmatch(detail)
    if match:
        return _unknown_field(_message_type(match.group(1)), match.group(2))
    match = _NO_ENUM_VALUE.fullmatch(detail)
    if match:
        return _unknown_enum_value(match.group(1), match.group(2))
    match = _REPEATED.fullmatch(detail)
    if match:
        return (f'field "{match.group(2)}" of {_short(match.group(1))} is given more than once '
                "but takes a single value; keep only one")
    match = _OUT_OF_RANGE.fullmatch(detail)
    if match:
        return _out_of_range(blocks, match.group(1))
    if detail.startswith("Expected identifier or number, got }") and blocks.unmatched_close:
        return ('this "}" closes no open "{"; remove it (or look above for a "}" that closes its '
                "block too early)")
    if detail.startswith("Expected string but found"):
        return (f"{detail}; string values must be quoted, e.g. type: \"Convolution\" "
                "(V1 nets spell enum types inside `layers { }`, not `layer { }`)")
    return (f"{detail}; fix the syntax here (Caffe text format is `field: value` and "
            f"`message {{ ... }}`; top-level message is {message.DESCRIPTOR.name})")


def _message_type(full_name):
    return caffe_pb2.DESCRIPTOR.pool.FindMessageTypeByName(full_name)


def _short(full_name):
    return full_name[len(_PACKAGE):] if full_name.startswith(_PACKAGE) else full_name


def _unknown_field(descriptor, name):
    text = f'unknown field "{name}" in {descriptor.name}'
    fork = forks.field_note(descriptor.name, name)
    if fork:
        return f"{text}: {fork}"
    guess = difflib.get_close_matches(name, [f.name for f in descriptor.fields], n=1, cutoff=0.6)
    if guess:
        return f'{text}; did you mean "{guess[0]}"?'
    holders = [f.name for f in descriptor.fields
               if f.message_type is not None and name in f.message_type.fields_by_name]
    if holders:
        return f"{text}; it belongs inside {' or '.join(holders)} {{ }}"
    return f"{text}; check the spelling against {descriptor.name} in proto/caffe.proto"


def _unknown_enum_value(enum_full_name, value):
    descriptor = caffe_pb2.DESCRIPTOR.pool.FindEnumTypeByName(enum_full_name)
    names = [v.name for v in descriptor.values]
    guess = difflib.get_close_matches(value.upper(), names, n=1, cutoff=0.6)
    hint = f'did you mean {guess[0]}? ' if guess else ""
    return (f"unknown value {value} for {_short(enum_full_name)}; {hint}"
            f"expected one of {', '.join(names)}")


_RANGES = {"uint32": (0, 2**32 - 1), "int32": (-2**31, 2**31 - 1),
           "uint64": (0, 2**64 - 1), "int64": (-2**63, 2**63 - 1)}


def _out_of_range(blocks, value):
    """A value too large (or negative) for its integer field, with the field and its range."""
    name = blocks.field_before_error()
    holder = blocks.innermost_type()
    field = holder.fields_by_name.get(name) if holder is not None and name else None
    kind = _type_name(field) if field is not None else None
    if kind not in _RANGES:
        return f"value out of range: {value}; check the number against the field's type"
    low, high = _RANGES[kind]
    return (f"{name} in {holder.name} takes a whole number from {low} to {high} ({kind}), "
            f"found {value}")


def _type_name(field):
    names = {field.TYPE_UINT32: "uint32", field.TYPE_INT32: "int32", field.TYPE_UINT64: "uint64",
             field.TYPE_INT64: "int64"}
    return names.get(field.type)

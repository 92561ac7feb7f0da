"""Read the PHP graderqueue's ``config.inc.php`` without running PHP.

Running the file would need PHP and would execute whatever it holds, so this
reads the small part of PHP such files are written in: ``$name = value;``
with strings, numbers, booleans, null, arrays and ``.`` joining strings,
plus comments and ``<?php`` / ``?>``. Anything else (a function call, a
variable inside a double-quoted string, a heredoc) is reported with its line
number; a value is never guessed.

Arrays become a ``list`` when PHP would number them 0, 1, 2... in order,
else a ``dict`` with PHP's keys (``"8"`` as a key is the integer 8, as in PHP).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeAlias

from graderqueue.errors import ConfigError

PhpValue: TypeAlias = (
    str | int | float | bool | list["PhpValue"] | dict[str | int, "PhpValue"] | None
)

_NAME = re.compile(r"[A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*")
_NUMBER = re.compile(
    r"0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+"
    r"|(?:[0-9][0-9_]*)?\.[0-9][0-9_]*(?:[eE][+-]?[0-9]+)?"
    r"|[0-9][0-9_]*\.?(?:[eE][+-]?[0-9]+)?"
)
_INT_KEY = re.compile(r"-?(?:0|[1-9][0-9]*)")
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "v": "\v", "e": "\x1b", "f": "\f"}
_SIMPLE_ESCAPES.update({"\\": "\\", "$": "$", '"': '"'})
_PUNCT = ("=>", "(", ")", "[", "]", ",", "=", ";", ".", "-", "+")


@dataclass(frozen=True)
class Problem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class PhpConfigError(ConfigError):
    """The file holds something this reader does not read; every problem has its line."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class Token:
    kind: str  # "str", "num", "name", "var", "punct", "end"; "bad": an unread string
    value: str | int | float
    line: int


class _Fatal(ConfigError):
    """The file cannot be cut into tokens past this point (an unended string...)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.problem = Problem(line, message)


# -- tokens --------------------------------------------------------------------


def tokenize(text: str) -> list[Token]:
    """The file's tokens; ``?>`` counts as the ``;`` it is in PHP."""
    tokens: list[Token] = []
    pos, line, in_php = 0, 1, False
    while pos < len(text):
        if not in_php:
            start = text.find("<?php", pos)
            outside = text[pos : start if start >= 0 else len(text)]
            if outside.strip():
                # Text outside PHP is printed by PHP, never configuration.
                first = line + outside[: len(outside) - len(outside.lstrip())].count("\n")
                raise _Fatal(first, "text outside <?php ... ?>")
            line += outside.count("\n")
            if start < 0:
                break
            pos, in_php = start + len("<?php"), True
            continue
        char = text[pos]
        if char == "\n":
            line += 1
            pos += 1
        elif char in " \t\r\f\v":
            pos += 1
        elif text.startswith("?>", pos):
            tokens.append(Token("punct", ";", line))
            pos, in_php = pos + 2, False
            if text.startswith("\n", pos):  # PHP eats the newline after ?>
                pos, line = pos + 1, line + 1
        elif char == "#" or text.startswith("//", pos):
            end = _line_comment_end(text, pos)
            pos = end
        elif text.startswith("/*", pos):
            end = text.find("*/", pos + 2)
            if end < 0:
                raise _Fatal(line, "comment /* never closed")
            line += text.count("\n", pos, end)
            pos = end + 2
        else:
            token, end = _token_at(text, pos, line)
            line += text.count("\n", pos, end)  # only strings span lines
            tokens.append(token)
            pos = end
    tokens.append(Token("end", "", line))
    return tokens


def _line_comment_end(text: str, pos: int) -> int:
    """A ``//`` or ``#`` comment ends at the newline, or just before ``?>`` as in PHP."""
    newline = text.find("\n", pos)
    close = text.find("?>", pos)
    ends = [e for e in (newline, close) if e >= 0]
    return min(ends) if ends else len(text)


def _token_at(text: str, pos: int, line: int) -> tuple[Token, int]:
    char = text[pos]
    if char == "'":
        value, end = _single_quoted(text, pos, line)
        return Token("str", value, line), end
    if char == '"':
        return _double_quoted(text, pos, line)
    if text.startswith("<<<", pos):
        raise _Fatal(line, "heredoc/nowdoc strings (<<<) are not read: use a quoted string")
    if char == "$":
        match = _NAME.match(text, pos + 1)
        if match is None:
            raise _Fatal(line, "'$' not followed by a variable name")
        return Token("var", match.group(), line), match.end()
    if char.isdigit() or (char == "." and pos + 1 < len(text) and text[pos + 1].isdigit()):
        match = _NUMBER.match(text, pos)
        assert match is not None  # a digit, or '.' then a digit, always matches
        return Token("num", _number(match.group(), line), line), match.end()
    match = _NAME.match(text, pos)
    if match is not None:
        return Token("name", match.group(), line), match.end()
    for punct in _PUNCT:
        if text.startswith(punct, pos):
            return Token("punct", punct, line), pos + len(punct)
    raise _Fatal(line, f"unexpected character {char!r}")


def _number(literal: str, line: int) -> int | float:
    digits = literal.replace("_", "")
    try:
        if digits[:2].lower() in ("0x", "0b", "0o"):
            return int(digits, 0)
        if re.fullmatch(r"[0-9]+", digits):
            # A leading zero makes an octal integer in PHP ("010" is 8).
            return int(digits, 8) if len(digits) > 1 and digits[0] == "0" else int(digits)
        return float(digits)
    except ValueError:
        raise _Fatal(line, f"cannot read the number {literal!r}") from None


def _single_quoted(text: str, pos: int, line: int) -> tuple[str, int]:
    out: list[str] = []
    i = pos + 1
    while i < len(text):
        char = text[i]
        if char == "'":
            return "".join(out), i + 1
        if char == "\\" and i + 1 < len(text) and text[i + 1] in "\\'":
            out.append(text[i + 1])
            i += 2
            continue
        out.append(char)  # any other backslash stays, as in PHP
        i += 1
    raise _Fatal(line, "string never closed (')")


def _double_quoted(text: str, pos: int, line: int) -> tuple[Token, int]:
    """The string, or a "bad" token saying why it is not read (reported in its statement)."""
    out: list[str] = []
    i, here = pos + 1, line
    trouble: Problem | None = None
    while i < len(text):
        char = text[i]
        if char == '"':
            if trouble:
                return Token("bad", trouble.message, trouble.line), i + 1
            return Token("str", "".join(out), line), i + 1
        if char == "\n":
            here += 1
        if (char == "$" and _NAME.match(text, i + 1)) or text.startswith(("${", "{$"), i):
            message = "a variable inside a double-quoted string is not read"
            trouble = trouble or Problem(here, message)
        if char == "\\" and i + 1 < len(text):
            try:
                piece, i = _escape(text, i, here)
            except _Fatal as exc:
                trouble, i = trouble or exc.problem, i + 2
                continue
            out.append(piece)
            continue
        out.append(char)
        i += 1
    raise _Fatal(line, 'string never closed (")')


def _escape(text: str, i: int, line: int) -> tuple[str, int]:
    """One backslash sequence of a double-quoted string, as PHP reads it."""
    nxt = text[i + 1]
    if nxt in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[nxt], i + 2
    octal = re.match(r"[0-7]{1,3}", text[i + 1 : i + 4])
    hexa = re.match(r"x([0-9a-fA-F]{1,2})", text[i + 1 : i + 4])
    if octal or hexa:
        code = int(octal.group(), 8) & 0xFF if octal else int(hexa.group(1), 16)  # type: ignore[union-attr]
        if code > 0x7F:
            # One byte of a multi-byte character: which text it makes is a guess.
            raise _Fatal(line, "a byte escape above \\x7f is not read")
        used = octal.group() if octal else hexa.group()  # type: ignore[union-attr]
        return chr(code), i + 1 + len(used)
    if nxt == "u" and text.startswith("{", i + 2):
        end = text.find("}", i + 3)
        code = text[i + 3 : end] if end > 0 else ""
        if not re.fullmatch(r"[0-9a-fA-F]{1,6}", code) or int(code, 16) > 0x10FFFF:
            raise _Fatal(line, "invalid \\u{...} escape")
        return chr(int(code, 16)), end + 1
    return "\\", i + 1  # an unknown escape keeps its backslash, as in PHP


# -- statements and values -------------------------------------------------------


class _Unreadable(ConfigError):
    """One statement is not read; the others still are, to report them all."""

    def __init__(self, token: Token, message: str) -> None:
        super().__init__(message)
        self.problem = Problem(token.line, message)


def parse_php_config(text: str) -> dict[str, PhpValue]:
    """Every ``$name = value;`` of the file, by name (without ``$``); a later one wins.

    Raises :class:`PhpConfigError` listing every statement it cannot read.
    """
    try:
        tokens = tokenize(text)
    except _Fatal as exc:
        raise PhpConfigError([exc.problem]) from None
    values: dict[str, PhpValue] = {}
    problems: list[Problem] = []
    for statement in _statements(tokens, problems):
        try:
            name, value = _assignment(statement)
        except _Unreadable as exc:
            problems.append(exc.problem)
            continue
        values[name] = value
    if problems:
        raise PhpConfigError(problems)
    return values


def _statements(tokens: list[Token], problems: list[Problem]) -> list[list[Token]]:
    """Tokens cut at each ``;``; empty statements (``;;``, ``?>`` after ``;``) dropped."""
    statements: list[list[Token]] = []
    current: list[Token] = []
    for token in tokens:
        if token.kind == "end":
            if current:
                problems.append(Problem(current[0].line, "statement not ended by ';'"))
            break
        if token.kind == "punct" and token.value == ";":
            if current:
                statements.append([*current, token])
            current = []
        else:
            current.append(token)
    return statements


class _Reader:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def is_punct(self, value: str) -> bool:
        token = self.peek()
        return token.kind == "punct" and token.value == value

    def expect(self, value: str, what: str) -> None:
        token = self.take()
        if token.kind != "punct" or token.value != value:
            raise _Unreadable(token, f"expected {what}, found {_shown(token)}")


def _shown(token: Token) -> str:
    if token.kind == "str":
        return "a string"  # never a string's text: it may be a password
    if token.kind == "var":
        return f"${token.value}"
    return repr(token.value) if token.kind != "end" else "the end of the file"


def _assignment(statement: list[Token]) -> tuple[str, PhpValue]:
    reader = _Reader(statement)
    first = reader.take()
    if first.kind != "var":
        found = _shown(first)
        raise _Unreadable(first, f"only `$name = value;` is read, not a statement starting {found}")
    reader.expect("=", f"'=' after ${first.value}")
    value = _value(reader)
    reader.expect(";", "';' after the value")
    return str(first.value), value


def _value(reader: _Reader) -> PhpValue:
    """A value; strings joined by ``.`` make one string, as PHP joins them."""
    value = _single_value(reader)
    while reader.is_punct("."):
        dot = reader.take()
        right = _single_value(reader)
        if not isinstance(value, str) or not isinstance(right, str):
            raise _Unreadable(dot, "'.' is read only between strings")
        value += right
    return value


def _single_value(reader: _Reader) -> PhpValue:
    token = reader.take()
    if token.kind in ("str", "num"):
        return token.value
    if token.kind == "bad":  # a string that is not read; its line is the trouble's
        raise _Unreadable(token, str(token.value))
    if token.kind == "punct" and token.value in ("-", "+"):
        number = reader.take()
        if number.kind != "num":
            raise _Unreadable(number, f"a number expected after {token.value!r}")
        return -number.value if token.value == "-" else number.value  # type: ignore[operator]
    if token.kind == "punct" and token.value == "[":
        return _array_items(reader, "]")
    if token.kind == "name":
        word = str(token.value).lower()
        if word in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[word]
        if word == "array" and reader.is_punct("("):
            reader.take()
            return _array_items(reader, ")")
    raise _Unreadable(token, f"cannot read the value {_shown(token)}")


def _array_items(reader: _Reader, close: str) -> PhpValue:
    """The items up to *close*; keys follow PHP's rules (next index = largest int key + 1)."""
    items: dict[str | int, PhpValue] = {}
    next_index = 0
    while not reader.is_punct(close):
        first = _value(reader)
        if reader.is_punct("=>"):
            arrow = reader.take()
            key = _array_key(first, arrow)
            value = _value(reader)
        else:
            key, value = next_index, first
        items[key] = value
        if isinstance(key, int):
            next_index = max(next_index, key + 1)
        if not reader.is_punct(close):
            reader.expect(",", f"',' or {close!r} in an array")
    reader.take()
    if list(items) == list(range(len(items))):
        return list(items.values())
    return items


def _array_key(key: PhpValue, arrow: Token) -> str | int:
    if isinstance(key, bool) or key is None:
        # PHP turns these into 1, 0 and "": valid, but never meant in a config.
        raise _Unreadable(arrow, "an array key must be a string or an integer")
    if isinstance(key, int):
        return key
    if isinstance(key, str):
        return int(key) if _INT_KEY.fullmatch(key) and key != "-0" else key
    raise _Unreadable(arrow, "an array key must be a string or an integer")

"""The program's stdout and stderr as the extra `sendresults` fields.

This project's queue keeps them beside the result (its JSON API serves them
as the job's `stdout` and `stderr` artifacts); the original queue ignores
form fields it does not know, so sending them to it costs only bytes.

Each is text, UTF-8 with invalid bytes replaced, cut to `max_bytes` bytes of
UTF-8 (`program.artifact_max_bytes`); a cut one is flagged with
`<name>_truncated=1`, so nobody takes a partial log for the whole.
"""

from __future__ import annotations

# A UTF-8 character is at most 4 bytes: a cut moves back at most 3.
_MAX_CONTINUATION = 3


def clip(data: bytes, max_bytes: int) -> tuple[str, bool]:
    """`data` as text of at most `max_bytes` bytes of UTF-8; True when cut."""
    end = min(len(data), max_bytes)
    # Cut before a character whose bytes do not all fit, rather than through
    # it: half a character would come out as a replacement character.
    while 0 < end < len(data) and max_bytes - end < _MAX_CONTINUATION and _continues(data[end]):
        end -= 1
    text = data[:end].decode("utf-8", "replace")
    encoded = text.encode("utf-8")
    if len(encoded) > max_bytes:
        # Each invalid byte became a 3-byte replacement character.
        return encoded[:max_bytes].decode("utf-8", "ignore"), True
    return text, end < len(data)


def _continues(byte: int) -> bool:
    """A UTF-8 continuation byte (10xxxxxx): the middle of a character."""
    return byte & 0xC0 == 0x80


def artifact_fields(outputs: dict[str, tuple[bytes, bool]], max_bytes: int) -> dict[str, str]:
    """Form fields for `{name: (captured bytes, cut while capturing)}`.

    Nothing when `max_bytes` is 0: the operator wants no artifacts sent.
    """
    fields: dict[str, str] = {}
    if max_bytes <= 0:
        return fields
    for name, (data, cut_before) in outputs.items():
        text, cut = clip(data, max_bytes)
        fields[name] = text
        if cut or cut_before:
            fields[f"{name}_truncated"] = "1"
    return fields

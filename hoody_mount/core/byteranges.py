"""HTTP Range requests (RFC 9110 §14): ``bytes=`` ranges resolved against a size."""

from __future__ import annotations

MAX_RANGES = 16


class RangeError(Exception):
    """The Range header cannot be satisfied (answer 416)."""


def parse(header: str, size: int) -> list[tuple[int, int]] | None:
    """Inclusive (first, last) byte pairs, or None when the header is to be ignored.

    Malformed headers and units other than bytes are ignored (a 200 with the whole
    file), as the RFC asks, and so are several ranges that ask for more bytes than the
    file holds (they overlap). Ranges that do not overlap the file raise RangeError, and
    so does a request for more than ``MAX_RANGES`` ranges.
    """
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec.strip():
        return None
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if len(parts) > MAX_RANGES:
        raise RangeError(f"at most {MAX_RANGES} ranges per request")
    ranges: list[tuple[int, int]] = []
    for part in parts:
        first_text, dash, last_text = part.partition("-")
        if not dash:
            return None
        first_text, last_text = first_text.strip(), last_text.strip()
        if not first_text:
            if not last_text.isdigit():
                return None
            length = int(last_text)
            if length == 0 or size == 0:
                continue  # unsatisfiable: no last bytes to give
            ranges.append((max(size - length, 0), size - 1))
            continue
        if not first_text.isdigit() or (last_text and not last_text.isdigit()):
            return None
        first = int(first_text)
        if last_text and int(last_text) < first:
            return None  # a reversed range makes the whole header invalid
        if first >= size:
            continue  # unsatisfiable
        last = int(last_text) if last_text else size - 1
        ranges.append((first, min(last, size - 1)))
    if not ranges:
        raise RangeError("no range overlaps the file")
    if len(ranges) > 1 and sum(last - first + 1 for first, last in ranges) > size:
        return None  # (overlapping ranges, as RFC 9110 allows: 16 times "0-" of a 1 GiB
        # file asked for 16 GiB; the whole file, once, has every byte they name)
    return ranges

"""``GET /api/v1/storage``: the capacity of each filesystem the user can see, and with
``?du=PATH`` what ``du -sb PATH/*`` says, computed within a time budget."""

from __future__ import annotations

from typing import Any

from ..core.session import Session
from ..http_names import OPERATION
from .errors import ApiError
from .replies import Headers, json_reply, json_text

DU_SECONDS = 10.0  # a du's budget; past it the answer is partial ("complete": false)


def answer(
    environ: dict[str, Any], session: Session, query: dict[str, list[str]], du_seconds: float
) -> tuple[str, Headers, bytes]:
    """The storage answer of a GET (or HEAD)."""
    if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
        raise ApiError(405, "method_not_allowed", "the storage endpoint answers GET only")
    if "du" not in query:
        environ[OPERATION] = "storage"
        found = [usage.as_json() for usage in session.filesystems()]
        for item in found:
            item["path"] = json_text(str(item["path"]))
        return json_reply(200, {"filesystems": found})
    environ[OPERATION] = "du"
    try:
        summary = session.disk_usage(query["du"][0] or "/", du_seconds)
    except NotADirectoryError:
        why = "du= names a folder, whose members are summed"
        raise ApiError(400, "not_a_directory", why) from None
    return json_reply(
        200,
        {
            "path": json_text(summary.path),
            "total_bytes": summary.total_bytes,
            "entries": [
                {"name": json_text(m.name), "bytes": m.bytes, "files": m.files}
                for m in summary.entries
            ],
            "complete": summary.complete,
            "skipped": [json_text(path) for path, _why in summary.errors[:100]],
        },
    )

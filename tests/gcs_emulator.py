"""gcp-storage-emulator with GCS's write preconditions: ``python tests/gcs_emulator.py start ...``.

Real GCS refuses an upload whose ``ifGenerationMatch`` does not name the object's live generation
(``0``: no live object) with ``412 Precondition Failed``; the emulator accepts the parameter and
ignores it. Many writers on one bucket are safe only because GCS enforces it, and lorry refuses a
store whose server does not (``lorry.registry.safety``), so the tests run the emulator with that one
check added in front of its upload handler, and a longer listen queue (below).

The emulator also rereads and rewrites every byte a resumable upload holds so far for each chunk it
receives, so a 2 GiB upload in 8 MiB chunks takes minutes; here a chunk is appended in place instead
(the same answers, the same checks on where a chunk starts). Nothing else changes.
"""

from __future__ import annotations

import socketserver
import sys
import threading
from http import HTTPStatus
from typing import Any

from gcp_storage_emulator import __main__ as emulator  # type: ignore[import-untyped]
from gcp_storage_emulator import server  # type: ignore[import-untyped]
from gcp_storage_emulator import storage as emulator_storage  # type: ignore[import-untyped]
from gcp_storage_emulator.exceptions import BadRequest, NotFound  # type: ignore[import-untyped]
from gcp_storage_emulator.handlers import objects  # type: ignore[import-untyped]

_insert = objects.insert
_lock = threading.Lock()


def _object_name(request: Any) -> str | None:
    if "name" in request.query:
        return str(request.query["name"][0])
    data = request.data
    if isinstance(data, dict):  # a multipart upload's metadata part, or a resumable upload's JSON
        meta = data.get("meta", data)
        name = meta.get("name") if isinstance(meta, dict) else None
        return name if isinstance(name, str) else None
    return None


def insert_with_preconditions(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
    wanted = request.query.get("ifGenerationMatch")
    if not wanted:
        return _insert(request, response, storage, *args, **kwargs)
    with _lock:  # the check and the write as one step, as GCS does it
        try:
            live = storage.get_file_obj(request.params["bucket_name"], _object_name(request))
            generation = str(live.get("generation") or "0")
        except NotFound:
            generation = "0"
        if generation != wanted[0]:
            response.status = HTTPStatus.PRECONDITION_FAILED
            reasons = [{"reason": "conditionNotMet"}]
            response.json({"error": {"code": 412, "message": "Precondition Failed", "errors": reasons}})
            return None
        return _insert(request, response, storage, *args, **kwargs)


_uploads: dict[str, bytearray] = {}  # resumable upload id -> the bytes received so far


def resumable_byte_count(self: Any, file_id: str) -> int:
    return len(_uploads.get(file_id, b""))


def add_to_resumable_upload(
    self: Any, file_id: str, content: bytes, total_size: int | None = None, expected_start: int | None = None
) -> bytes | None:
    """The emulator's own, appending in place: the whole object once every byte is in, else None."""
    received = _uploads.setdefault(file_id, bytearray())
    if expected_start is not None and expected_start != len(received):
        raise BadRequest(f"Invalid Content-Range start: expected {len(received)}, got {expected_start}")
    received += content or b""
    if total_size is None or len(received) < total_size:
        return None
    del _uploads[file_id]
    return bytes(received[:total_size])


def main() -> None:
    # The server answers one request at a time and listens with socketserver's backlog of 5: a client
    # with more connections than that waits on the ones the kernel dropped. Queue them instead.
    socketserver.TCPServer.request_queue_size = 256
    emulator_storage.Storage.get_resumable_byte_count = resumable_byte_count
    emulator_storage.Storage.add_to_resumable_upload = add_to_resumable_upload
    objects.insert = insert_with_preconditions  # the route the server falls back to for bare POSTs
    for _pattern, handlers in server.HANDLERS:
        for method, handler in list(handlers.items()):
            if handler is _insert:
                handlers[method] = insert_with_preconditions
    emulator.main(sys.argv[1:])


if __name__ == "__main__":
    main()

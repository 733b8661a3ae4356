"""Multipart uploads that a crashed process left open.

lorry aborts every upload it abandons, so in normal operation none stay behind; a process that was
killed leaves its upload for the next attempt to resume (see ``journal.py``). Those that no attempt
came back for are found here by age and aborted, after a grace period that protects uploads still in
progress on other machines.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lorry.storage.base import MultipartStore, Store, Upload

DEFAULT_GRACE = timedelta(hours=24)


async def stale_uploads(
    store: Store, older_than: timedelta = DEFAULT_GRACE, now: datetime | None = None
) -> list[Upload]:
    """Open uploads started more than ``older_than`` ago (none on a store without multipart)."""
    if not isinstance(store, MultipartStore):
        return []
    cutoff = (now or datetime.now(UTC)) - older_than
    found = []
    async for upload in store.list_multipart(""):
        initiated = upload.initiated if upload.initiated.tzinfo else upload.initiated.replace(tzinfo=UTC)
        if initiated <= cutoff:
            found.append(upload)
    return found


async def abort_uploads(store: Store, uploads: list[Upload]) -> None:
    if isinstance(store, MultipartStore):
        for upload in uploads:
            await store.abort_multipart(upload.key, upload.upload_id)

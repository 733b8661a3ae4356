"""obstore (Rust object_store) through its asyncio API.

    python obstore_driver.py up FOLDER BUCKET PREFIX
    python obstore_driver.py down BUCKET PREFIX FOLDER

Small and medium files: one ``put_async`` / ``get_async`` each, 64 at once. A large file: obstore's
own multipart upload (``put_async`` of a path, 12 parts in flight), and parallel ranged GETs of 16 MiB
(16 in flight) written in place. Endpoint and keys come from the AWS_* variables.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import obstore
from obstore.store import S3Store

CONCURRENCY = 64
LARGE = 64 << 20
RANGE = 16 << 20
RANGES_IN_FLIGHT = 16


def open_store(bucket: str) -> S3Store:
    return S3Store(
        bucket,
        endpoint=os.environ["AWS_ENDPOINT_URL"],
        access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        region=os.environ.get("AWS_REGION", "us-east-1"),
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )


async def upload(files: list[Path], folder: Path, store: S3Store, prefix: str) -> int:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(path: Path) -> None:
        async with gate:
            await obstore.put_async(store, prefix + path.relative_to(folder).as_posix(), path)

    await asyncio.gather(*(one(p) for p in files))
    return len(files)


async def download(store: S3Store, prefix: str, folder: Path) -> int:
    objects = [meta for batch in obstore.list(store, prefix=prefix) for meta in batch]
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(key: str, size: int) -> None:
        target = folder / key[len(prefix) :]
        target.parent.mkdir(parents=True, exist_ok=True)
        if size >= LARGE:
            await ranged(store, key, size, target)
            return
        async with gate:
            result = await obstore.get_async(store, key)
            data = await result.bytes_async()
        if size > 1 << 20:
            await asyncio.to_thread(target.write_bytes, data)
        else:
            target.write_bytes(data)

    await asyncio.gather(*(one(m["path"], m["size"]) for m in objects))
    return len(objects)


async def ranged(store: S3Store, key: str, size: int, target: Path) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)
        gate = asyncio.Semaphore(RANGES_IN_FLIGHT)

        async def part(start: int) -> None:
            async with gate:
                data = await obstore.get_range_async(store, key, start=start, end=min(size, start + RANGE))
                await asyncio.to_thread(os.pwrite, fd, data, start)

        await asyncio.gather(*(part(s) for s in range(0, size, RANGE)))
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    if argv[1] == "up":
        folder, bucket, prefix = Path(argv[2]), argv[3], argv[4]
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        count = asyncio.run(upload(files, folder, open_store(bucket), prefix))
    else:
        bucket, prefix, folder = argv[2], argv[3], Path(argv[4])
        count = asyncio.run(download(open_store(bucket), prefix, folder))
    print(json.dumps({"op_seconds": time.perf_counter() - started, "files": count}), flush=True)
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    # obstore 0.12 now and then aborts (SIGABRT) while the interpreter tears down, after all its work
    # is done and checked: leave without the teardown, as a short-lived tool would.
    sys.stderr.flush()
    os._exit(code)

"""boto3's transfer manager (s3transfer, the classic threaded one).

    python boto3_driver.py up FOLDER BUCKET PREFIX
    python boto3_driver.py down BUCKET PREFIX FOLDER

Every file is submitted to one ``TransferManager``, which runs them on its worker threads
(``max_concurrency``, default 10, with as many pooled connections) and splits large files into
8 MiB parts. ``BENCH_BOTO3_CONCURRENCY`` changes the number of threads.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import boto3  # type: ignore[import-untyped]
from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from s3transfer.manager import TransferManager  # type: ignore[import-untyped]


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    concurrency = int(os.environ.get("BENCH_BOTO3_CONCURRENCY", "10"))
    client = boto3.client(
        "s3",
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        config=Config(
            s3={"addressing_style": "path"},
            max_pool_connections=concurrency,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )
    config = TransferConfig(max_concurrency=concurrency)
    futures = []
    with TransferManager(client, config) as manager:
        if argv[1] == "up":
            folder, bucket, prefix = Path(argv[2]), argv[3], argv[4]
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                key = prefix + path.relative_to(folder).as_posix()
                futures.append(manager.upload(str(path), bucket, key))
        else:
            bucket, prefix, folder = argv[2], argv[3], Path(argv[4])
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    target = folder / item["Key"][len(prefix) :]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    futures.append(manager.download(bucket, item["Key"], str(target)))
        for future in futures:
            future.result()
    print(json.dumps({"op_seconds": time.perf_counter() - started, "files": len(futures)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Set-up and clean-up of the benchmark's bucket, outside every measured client (boto3).

python s3_admin.py create BUCKET     # create it if it does not exist
python s3_admin.py empty BUCKET      # abort open multipart uploads, delete every object
python s3_admin.py delete BUCKET     # empty it, then remove it
python s3_admin.py count BUCKET      # print {"objects": N, "bytes": B, "uploads": U}
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]


def client() -> Any:
    return boto3.client(
        "s3",
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        config=Config(
            s3={"addressing_style": "path"},
            max_pool_connections=32,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def empty(s3: Any, bucket: str) -> None:
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        for upload in page.get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


def count(s3: Any, bucket: str) -> dict[str, int]:
    objects = size = uploads = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            objects += 1
            size += int(item["Size"])
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        uploads += len(page.get("Uploads", []))
    return {"objects": objects, "bytes": size, "uploads": uploads}


def main(argv: list[str]) -> int:
    action, bucket = argv[1], argv[2]
    s3 = client()
    if action == "create":
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket)
    elif action == "empty":
        empty(s3, bucket)
    elif action == "delete":
        empty(s3, bucket)
        s3.delete_bucket(Bucket=bucket)
    elif action == "count":
        print(json.dumps(count(s3, bucket)))
    else:
        raise SystemExit(f"unknown action {action!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

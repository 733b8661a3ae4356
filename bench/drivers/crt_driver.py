"""awscrt's S3 client (aws-c-s3, the engine under the AWS CLI v2 and boto3's CRT transfers).

    python crt_driver.py up FOLDER BUCKET PREFIX
    python crt_driver.py down BUCKET PREFIX FOLDER

Files go by path (``send_filepath`` / ``recv_filepath``): the client reads and writes them itself, and
splits large objects into 8 MiB parts in parallel. At most 256 requests are submitted at once. The
listing for a download is a ListObjectsV2 call through the same client.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote, urlsplit

from awscrt.auth import AwsCredentialsProvider
from awscrt.http import HttpHeaders, HttpRequest
from awscrt.io import ClientBootstrap, DefaultHostResolver, EventLoopGroup
from awscrt.s3 import S3Client, S3RequestTlsMode, S3RequestType

IN_FLIGHT = 256
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class Client:
    def __init__(self, bucket: str) -> None:
        endpoint = urlsplit(os.environ["AWS_ENDPOINT_URL"])
        self.host = endpoint.netloc
        self.bucket = bucket
        group = EventLoopGroup()
        credentials = AwsCredentialsProvider.new_static(
            os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
        )
        self.client = S3Client(
            bootstrap=ClientBootstrap(group, DefaultHostResolver(group)),
            region=os.environ.get("AWS_REGION", "us-east-1"),
            credential_provider=credentials,
            tls_mode=S3RequestTlsMode.DISABLED if endpoint.scheme == "http" else S3RequestTlsMode.ENABLED,
            throughput_target_gbps=10.0,
        )
        self.gate = threading.BoundedSemaphore(IN_FLIGHT)
        self.errors: list[BaseException] = []
        self.pending: list[object] = []

    def _path(self, key: str) -> str:
        return f"/{self.bucket}/{quote(key)}"

    def submit(self, method: str, key: str, local: Path) -> None:
        self.gate.acquire()
        headers = HttpHeaders([("host", self.host)])
        if method == "PUT":
            headers.add("content-length", str(local.stat().st_size))
            kind, extra = S3RequestType.PUT_OBJECT, {"send_filepath": str(local)}
        else:
            kind, extra = S3RequestType.GET_OBJECT, {"recv_filepath": str(local)}
        request = self.client.make_request(
            type=kind, request=HttpRequest(method, self._path(key), headers), **extra
        )
        self.pending.append(request)
        request.finished_future.add_done_callback(self._done)

    def _done(self, future: object) -> None:
        error = future.exception()  # type: ignore[attr-defined]
        if error is not None:
            self.errors.append(error)
        self.gate.release()

    def wait(self) -> None:
        for request in self.pending:
            request.finished_future.result()  # type: ignore[attr-defined]
        if self.errors:
            raise self.errors[0]

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        token: str | None = None
        while True:
            query = f"list-type=2&prefix={quote(prefix, safe='')}"
            if token:
                query += f"&continuation-token={quote(token, safe='')}"
            body = bytearray()
            request = self.client.make_request(
                type=S3RequestType.DEFAULT,
                operation_name="ListObjectsV2",
                request=HttpRequest("GET", f"/{self.bucket}?{query}", HttpHeaders([("host", self.host)])),
                on_body=lambda chunk, offset, into=body, **_: into.extend(chunk),
            )
            request.finished_future.result()
            root = ET.fromstring(bytes(body))
            keys.extend(e.findtext(f"{NS}Key") or "" for e in root.iter(f"{NS}Contents"))
            if root.findtext(f"{NS}IsTruncated") != "true":
                return keys
            token = root.findtext(f"{NS}NextContinuationToken")


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    if argv[1] == "up":
        folder, bucket, prefix = Path(argv[2]), argv[3], argv[4]
        client = Client(bucket)
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        for path in files:
            client.submit("PUT", prefix + path.relative_to(folder).as_posix(), path)
        count = len(files)
    else:
        bucket, prefix, folder = argv[2], argv[3], Path(argv[4])
        client = Client(bucket)
        keys = client.list(prefix)
        for key in keys:
            target = folder / key[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            client.submit("GET", key, target)
        count = len(keys)
    client.wait()
    print(json.dumps({"op_seconds": time.perf_counter() - started, "files": count}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

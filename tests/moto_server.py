"""moto's S3 server with its conditional writes made atomic: ``python tests/moto_server.py -H HOST -p PORT``.

moto checks ``If-None-Match`` and ``If-Match`` and then writes, with nothing between the two: its
server answers requests on many threads, so two conditional creates of one key can both pass the
check and both "succeed", which S3 never allows (a many-writers run on moto once ended with a
version holding another call's content, which this explains). Here every object write (a PUT, and
a POST that completes a multipart upload) holds one lock, so the check and the write are one step,
as on S3. Nothing else changes.
"""

from __future__ import annotations

import functools
import sys
import threading
from typing import Any

from moto import server
from moto.s3.responses import S3Response

_lock = threading.Lock()


def _atomic(method: Any) -> Any:
    @functools.wraps(method)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _lock:
            return method(*args, **kwargs)

    return locked


def main() -> None:
    S3Response.put_object = _atomic(S3Response.put_object)  # type: ignore[method-assign]
    S3Response._key_response_post = _atomic(S3Response._key_response_post)  # type: ignore[method-assign]
    server.main(sys.argv[1:])


if __name__ == "__main__":
    main()

"""How each client is invoked: the command line and environment of one upload or download.

Every client gets the same clean environment: an empty HOME (no user configuration reaches it), the
server's endpoint and keys in the standard AWS variables, and path-style addressing. Where a peer's
default concurrency is set for a wide-area network (rclone moves 4 files at once, the AWS CLI 10),
the harness passes the setting that was fastest here (see ``PEER_SETTINGS``), so that lorry is held
to the best each peer can do on this server.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DRIVERS = HERE / "drivers"

S3_CLIENTS = ("lorry", "lorry-unchecked", "s5cmd", "obstore", "awscrt", "boto3", "awscli", "rclone")
LOCAL_CLIENTS = ("lorry", "wandb", "dvc", "mlflow")

RCLONE_TRANSFERS = 32
AWSCLI_CONCURRENCY = 32
BOTO3_CONCURRENCY = 32

PEER_SETTINGS = {
    "s5cmd": "defaults (256 workers, 5 parts per file, 50 MB parts)",
    "obstore": "64 objects at once; obstore's multipart (5 MiB parts, 12 in flight); 16 MiB ranges x 16",
    "awscrt": "throughput target 10 Gb/s, 8 MiB parts, 256 requests submitted at once",
    "boto3": f"s3transfer TransferManager, max_concurrency={BOTO3_CONCURRENCY}, 8 MiB parts",
    "awscli": f"aws s3 cp --recursive, max_concurrent_requests={AWSCLI_CONCURRENCY}",
    "rclone": f"rclone copy --transfers {RCLONE_TRANSFERS} --checkers {RCLONE_TRANSFERS}",
    "lorry": "public API: add_dir(policy='immutable'), log_artifact, wait; use_artifact().download()",
    "lorry-unchecked": "lorry with LORRY_S3_BODY_CHECK=0: no digest of each body for the server to check, "
    "as the peers send none",
    "wandb": "wandb offline: Artifact.add_dir (default policy), log_artifact, finish",
    "dvc": "dvc add in a fresh `dvc init --no-scm` repository (default cache type: copy here)",
    "mlflow": "mlflow.log_artifacts in a run, file: tracking URI",
}


@dataclass(frozen=True)
class Server:
    endpoint: str
    access_key: str
    secret_key: str
    pids: tuple[int, ...]
    bucket: str = "lorry-bench"


@dataclass(frozen=True)
class Tools:
    """Where the two environments are: lorry's venv and the peers' venv."""

    lorry_python: Path
    peers_bin: Path
    home: Path  # an empty HOME for every client

    @property
    def peers_python(self) -> Path:
        return self.peers_bin / "python"


@dataclass(frozen=True)
class Invocation:
    command: list[str]
    env: dict[str, str]
    cwd: Path | None = None


def base_env(tools: Tools) -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["HOME"] = str(tools.home)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def aws_env(tools: Tools, server: Server) -> dict[str, str]:
    config = tools.home / "aws-config"
    if not config.exists():
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            "[default]\nregion = us-east-1\ns3 =\n"
            f"    addressing_style = path\n    max_concurrent_requests = {AWSCLI_CONCURRENCY}\n"
        )
    return {
        **base_env(tools),
        "AWS_ENDPOINT_URL": server.endpoint,
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(tools.home / "no-such-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
        "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
    }


def _rclone_env(tools: Tools, server: Server) -> dict[str, str]:
    return {
        **aws_env(tools, server),
        "RCLONE_CONFIG_BENCH_TYPE": "s3",
        "RCLONE_CONFIG_BENCH_PROVIDER": "Ceph",
        "RCLONE_CONFIG_BENCH_ENDPOINT": server.endpoint,
        "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": server.access_key,
        "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": server.secret_key,
        "RCLONE_CONFIG_BENCH_REGION": "us-east-1",
        "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true",
    }


def _lorry_env(client: str, store: str, cache: Path) -> dict[str, str]:
    env = {"LORRY_STORE": store, "LORRY_CACHE_DIR": str(cache), "LORRY_PROGRESS": "0"}
    if client == "lorry-unchecked":
        env["LORRY_S3_BODY_CHECK"] = "0"
    return env


def s3_upload(
    client: str, tools: Tools, server: Server, folder: Path, prefix: str, cache: Path
) -> Invocation:
    """Upload every file below ``folder`` to ``s3://bucket/prefix/``."""
    bucket, peers = server.bucket, tools.peers_bin
    env = aws_env(tools, server)
    url = f"s3://{bucket}/{prefix}/"
    if client.startswith("lorry"):
        env.update(_lorry_env(client, f"s3://{bucket}/{prefix}", cache))
        return Invocation(
            [str(tools.lorry_python), str(DRIVERS / "lorry_driver.py"), "up", str(folder), "dataset"], env
        )
    if client == "s5cmd":
        return Invocation(
            [str(peers / "s5cmd"), "--endpoint-url", server.endpoint, "cp", f"{folder}/*", url], env
        )
    if client == "awscli":
        return Invocation(
            [str(peers / "aws"), "s3", "cp", "--recursive", "--only-show-errors", str(folder), url], env
        )
    if client == "rclone":
        return Invocation(
            _rclone(peers, "copy", str(folder), f"bench:{bucket}/{prefix}"), _rclone_env(tools, server)
        )
    driver = {"obstore": "obstore_driver.py", "awscrt": "crt_driver.py", "boto3": "boto3_driver.py"}[client]
    env["BENCH_BOTO3_CONCURRENCY"] = str(BOTO3_CONCURRENCY)
    return Invocation(
        [str(tools.peers_python), str(DRIVERS / driver), "up", str(folder), bucket, prefix + "/"], env
    )


def s3_download(
    client: str, tools: Tools, server: Server, prefix: str, folder: Path, cache: Path
) -> Invocation:
    """Download everything below ``s3://bucket/prefix/`` into the empty ``folder``."""
    bucket, peers = server.bucket, tools.peers_bin
    env = aws_env(tools, server)
    url = f"s3://{bucket}/{prefix}/"
    if client.startswith("lorry"):
        env.update(_lorry_env(client, f"s3://{bucket}/{prefix}", cache))
        return Invocation(
            [str(tools.lorry_python), str(DRIVERS / "lorry_driver.py"), "down", "dataset", str(folder)], env
        )
    if client == "s5cmd":
        return Invocation(
            [str(peers / "s5cmd"), "--endpoint-url", server.endpoint, "cp", url + "*", f"{folder}/"], env
        )
    if client == "awscli":
        return Invocation(
            [str(peers / "aws"), "s3", "cp", "--recursive", "--only-show-errors", url, str(folder)], env
        )
    if client == "rclone":
        return Invocation(
            _rclone(peers, "copy", f"bench:{bucket}/{prefix}", str(folder)), _rclone_env(tools, server)
        )
    driver = {"obstore": "obstore_driver.py", "awscrt": "crt_driver.py", "boto3": "boto3_driver.py"}[client]
    env["BENCH_BOTO3_CONCURRENCY"] = str(BOTO3_CONCURRENCY)
    return Invocation(
        [str(tools.peers_python), str(DRIVERS / driver), "down", bucket, prefix + "/", str(folder)], env
    )


def _rclone(peers: Path, *args: str) -> list[str]:
    transfers = str(RCLONE_TRANSFERS)
    return [
        str(peers / "rclone"), "--config", "/dev/null", "--transfers", transfers, "--checkers", transfers,
        "--s3-no-check-bucket", "--stats", "0", *args,
    ]  # fmt: skip


# -- the local store ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalRun:
    """One local logging run: how to prepare it (untimed), the timed invocation, where bytes land, and
    how to put things back afterwards."""

    invocation: Invocation
    output: Path
    prepare: Callable[[], None] | None = None
    restore: Callable[[], None] | None = None


def local_log(client: str, tools: Tools, folder: Path, outdir: Path) -> LocalRun:
    env = base_env(tools)
    outdir.mkdir(parents=True, exist_ok=True)
    if client == "lorry":
        env.update(
            LORRY_STORE=str(outdir / "store"), LORRY_CACHE_DIR=str(outdir / "cache"), LORRY_PROGRESS="0"
        )
        command = [str(tools.lorry_python), str(DRIVERS / "lorry_driver.py"), "up", str(folder), "dataset"]
        return LocalRun(Invocation(command, env), outdir / "store")
    if client == "wandb":
        env.update(
            WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(outdir),
            WANDB_CACHE_DIR=str(outdir / "cache"), WANDB_DATA_DIR=str(outdir / "data"),
            WANDB_CONFIG_DIR=str(outdir / "config"), WANDB_ARTIFACT_DIR=str(outdir / "artifacts"),
        )  # fmt: skip
        command = [str(tools.peers_python), str(DRIVERS / "wandb_driver.py"), str(folder), str(outdir)]
        return LocalRun(Invocation(command, env), outdir)
    if client == "mlflow":
        env.update(MLFLOW_ALLOW_FILE_STORE="true")
        command = [str(tools.peers_python), str(DRIVERS / "mlflow_driver.py"), str(folder), str(outdir)]
        return LocalRun(Invocation(command, env), outdir / "mlruns")
    if client == "dvc":
        return _dvc(tools, env, folder, outdir)
    raise ValueError(f"unknown local client {client!r}")


def _dvc(tools: Tools, env: dict[str, str], folder: Path, outdir: Path) -> LocalRun:
    """``dvc add`` wants the data inside its repository: the dataset is moved in (a rename, untimed)
    and moved back afterwards."""
    import subprocess

    repo = outdir / "repo"
    inside = repo / "data"
    env.update(DVC_NO_ANALYTICS="1", DVC_SITE_CACHE_DIR=str(outdir / "site-cache"))
    dvc = str(tools.peers_bin / "dvc")

    def prepare() -> None:
        repo.mkdir(parents=True, exist_ok=True)
        for args in (["init", "--no-scm", "-q"], ["config", "core.check_update", "false"]):
            subprocess.run([dvc, *args], cwd=repo, env=env, check=True, capture_output=True)
        os.rename(folder, inside)

    def restore() -> None:
        if inside.exists():
            os.rename(inside, folder)

    return LocalRun(
        Invocation([dvc, "add", "-q", "data"], env, cwd=repo), repo / ".dvc" / "cache", prepare, restore
    )

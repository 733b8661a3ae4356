#!/usr/bin/env bash
# Install what the test servers need and the machine may lack (idempotent, quiet).
# Ceph RGW comes from Debian; moto and the GCS emulator are Python packages in the dev extras.
set -euo pipefail
here="$(dirname "$0")"
bash "$here/ceph-rgw.sh" install

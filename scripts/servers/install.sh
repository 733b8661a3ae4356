#!/usr/bin/env bash
# Install what the test servers need and the machine may lack (idempotent, quiet).
# Ceph RGW comes from Debian; moto and the GCS emulator are Python packages in the dev extras.
# iproute2 (ip) and nftables (nft) build the lossy link between network namespaces of tests/test_faults.py.
# chromium (driven by Playwright, with chromium-driver for Selenium users) runs the web UI's browser tests.
# xfsprogs (mkfs.xfs) makes the XFS-with-reflink filesystem of the reflink tests and bench scenario.
set -euo pipefail
here="$(dirname "$0")"
bash "$here/ceph-rgw.sh" install

missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v nft >/dev/null || missing+=(nftables)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
PATH="$PATH:/usr/sbin:/sbin" command -v mkfs.xfs >/dev/null || missing+=(xfsprogs)
if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "install.sh: ${missing[*]} missing (run as root to install); the packet loss and browser tests will fail" >&2
        exit 0
    fi
    echo "install.sh: installing ${missing[*]}" >&2
    log=$(mktemp)
    if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
                 apt-get install -y -qq --no-install-recommends "${missing[@]}"; }; } >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "install.sh: could not install ${missing[*]} with apt-get" >&2
        exit 1
    fi
    rm -f "$log"
fi

#!/usr/bin/env bash
# The test suite, also on a fresh machine: installs the clients and tools the tests drive when
# any is missing, then runs `cargo test --workspace`, passing on any arguments:
#
#   tests/run.sh                        # everything (several minutes; as root, see below)
#   tests/run.sh --test interop         # one test file
#   tests/run.sh -- --nocapture smtp    # arguments for the test binaries
#
# The interop tests run real clients (swaks, msmtp, curl, Python's smtplib, openssl), the
# browser test a headless chromium (screenshots in target/test-artifacts/browser/), the store's
# PostgreSQL tests a server of their own in a temporary directory (postgresql), and the unit
# tests run systemd-analyze, systemd-sysusers and systemd-tmpfiles: a missing one fails its tests, so on Debian or Ubuntu apt installs what is missing (with sudo unless we are
# root); apt is skipped when all are present. The full-disk tests mount a tmpfs: run as root.
# README.md ("Run the tests") and .ci/run give exactly this command.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(swaks libnet-ssleay-perl libauthen-sasl-perl msmtp curl systemd python3 openssl chromium postgresql)
if command -v dpkg-query >/dev/null && command -v apt-get >/dev/null; then
    missing=()
    for package in "${packages[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
        [[ $status == "install ok installed" ]] || missing+=("$package")
    done
    if ((${#missing[@]} > 0)); then
        echo "tests/run.sh: installing ${missing[*]}" >&2
        sudo=()
        if ((EUID != 0)); then
            command -v sudo >/dev/null || {
                echo "tests/run.sh: error: installing ${missing[*]} needs root, and sudo is not installed" >&2
                exit 1
            }
            sudo=(sudo)
        fi
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
else
    echo "tests/run.sh: no apt here: the tests need the programs of these Debian packages," \
        "and each test that misses one fails naming it: ${packages[*]}" >&2
fi

exec cargo test --workspace "$@"

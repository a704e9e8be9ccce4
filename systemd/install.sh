#!/bin/sh
# Installs Atacama Mail on a systemd host: the daemon, its socket and service units, the
# sysusers.d and tmpfiles.d snippets, the README, and the example configuration as
# /etc/atacama/mail/config.toml unless that file already exists (it is never overwritten).
#
#   sudo systemd/install.sh                          # builds target/release/atacama-mail first
#   sudo BIN=/path/to/atacama-mail systemd/install.sh   # installs a binary built elsewhere
#   DESTDIR=/tmp/stage systemd/install.sh            # stages under /tmp/stage; nothing else
#
# Variables:
#   DESTDIR  staging root, prepended to every path (default: none, a real install)
#   PREFIX   where the binary, units and snippets go (default: /usr/local)
#   BIN      the atacama-mail binary to install (default: build it with cargo; without
#            cargo on PATH, e.g. under sudo, use an existing target/release/atacama-mail)
#
# A real install (no DESTDIR) then creates the atacama-mail user (systemd-sysusers) and its
# directories (systemd-tmpfiles), gives the config file to that group, and runs
# `systemctl daemon-reload` when systemd is running. It enables and starts nothing: put the
# certificate in place and add a user first (README.md, "Install on a systemd host").
set -eu

DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
CONFDIR=/etc/atacama/mail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

say() { printf 'install.sh: %s\n' "$*"; }
fail() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

case $PREFIX in
    /*) ;;
    *) fail "PREFIX must be an absolute path, not '$PREFIX'" ;;
esac

# --- the binary ------------------------------------------------------------------------------
if [ -z "${BIN:-}" ]; then
    BIN=$repo/target/release/atacama-mail
    if command -v cargo >/dev/null 2>&1; then
        say "building $BIN"
        (cd "$repo" && cargo build --release --locked --bin atacama-mail)
    elif [ -x "$BIN" ]; then
        say "cargo is not on PATH; installing the existing $BIN"
    else
        fail "no cargo on PATH and no $BIN: build it first (cargo build --release --bin atacama-mail) or set BIN"
    fi
fi
[ -f "$BIN" ] && [ -x "$BIN" ] || fail "BIN=$BIN is not an executable file"

bindir=$PREFIX/bin
unitdir=$PREFIX/lib/systemd/system
sysusersdir=$PREFIX/lib/sysusers.d
tmpfilesdir=$PREFIX/lib/tmpfiles.d
docdir=$PREFIX/share/doc/atacama-mail

install -d -m 0755 "$DESTDIR$bindir" "$DESTDIR$unitdir" "$DESTDIR$sysusersdir" \
    "$DESTDIR$tmpfilesdir" "$DESTDIR$docdir"
install -m 0755 "$BIN" "$DESTDIR$bindir/atacama-mail"

# The units name /usr/local paths; follow PREFIX.
for unit in atacama-mail.service atacama-mail-submission.socket atacama-mail-submissions.socket \
    atacama-mail-http.socket; do
    sed -e "s#/usr/local/bin/atacama-mail#$bindir/atacama-mail#" \
        -e "s#/usr/local/share/doc/atacama-mail#$docdir#" \
        "$here/$unit" >"$DESTDIR$unitdir/$unit.tmp"
    chmod 0644 "$DESTDIR$unitdir/$unit.tmp"
    mv "$DESTDIR$unitdir/$unit.tmp" "$DESTDIR$unitdir/$unit"
done
install -m 0644 "$here/sysusers.d-atacama-mail.conf" "$DESTDIR$sysusersdir/atacama-mail.conf"
install -m 0644 "$here/tmpfiles.d-atacama-mail.conf" "$DESTDIR$tmpfilesdir/atacama-mail.conf"
install -m 0644 "$repo/README.md" "$DESTDIR$docdir/README.md"
install -m 0644 "$here/config.toml.example" "$DESTDIR$docdir/config.toml.example"

# --- the configuration: the operator's file is never replaced --------------------------------
install -d -m 0755 "$DESTDIR/etc/atacama"
install -d -m 0750 "$DESTDIR$CONFDIR"
if [ -e "$DESTDIR$CONFDIR/config.toml" ]; then
    say "keeping the existing $CONFDIR/config.toml (the example is in $docdir)"
else
    install -m 0640 "$here/config.toml.example" "$DESTDIR$CONFDIR/config.toml"
    say "installed $CONFDIR/config.toml from the example: set hostname and [tls] in it"
fi

if [ -n "$DESTDIR" ]; then
    say "staged under $DESTDIR"
    exit 0
fi

# --- a real install: the user, its directories, systemd ----------------------------------------
[ "$(id -u)" -eq 0 ] || fail "a real install needs root (or set DESTDIR to stage)"
systemd-sysusers "$sysusersdir/atacama-mail.conf"
systemd-tmpfiles --create "$tmpfilesdir/atacama-mail.conf"
chgrp atacama-mail "$CONFDIR" "$CONFDIR/config.toml"
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
say "installed $bindir/atacama-mail and the units in $unitdir"
say "next: certificate, first user, then (README.md):"
say "  systemctl enable --now atacama-mail-submission.socket atacama-mail-submissions.socket \\"
say "    atacama-mail-http.socket atacama-mail.service"

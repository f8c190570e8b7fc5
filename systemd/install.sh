#!/usr/bin/env bash
# Install or upgrade daemond as a systemd service. Idempotent: run it again
# after `git pull` to upgrade. See docs/operations.md.
#
# Usage: sudo systemd/install.sh [SOURCE_DIR]
#   SOURCE_DIR  a clone of the daemond repository (default: this script's repo)
#
# What it does:
#   1. creates the venv $PREFIX/venv (only if missing) and pip-installs SOURCE_DIR
#      into it (every run: that is the upgrade);
#   2. installs $ETC_DIR/daemond.yaml from SOURCE_DIR/etc/daemond.yaml, but
#      never overwrites an existing one;
#   3. installs $SYSTEMD_DIR/daemond.service and $PREFIX/docs/operations.md,
#      and links $BIN_DIR/daemonctl to the venv's daemonctl;
#   4. systemctl daemon-reload, enable, and start (or restart if running).
#
# Environment (defaults in brackets), for packaging and tests:
#   PREFIX        [/opt/daemond]         venv goes to $PREFIX/venv
#   ETC_DIR       [/etc/daemond]         config directory
#   SYSTEMD_DIR   [/etc/systemd/system]  where the unit is installed
#   BIN_DIR       [/usr/local/bin]       where the daemonctl symlink goes
#   PYTHON        [python3]              interpreter that creates the venv
#   NO_SYSTEMCTL  [unset]                1: do not call systemctl at all
#   NO_START      [unset]                1: enable but do not (re)start
#   ALLOW_NON_ROOT [unset]               1: skip the must-be-root check
#                                        (only sensible with the dirs above
#                                        pointing somewhere writable)
set -euo pipefail

PREFIX=${PREFIX:-/opt/daemond}
ETC_DIR=${ETC_DIR:-/etc/daemond}
SYSTEMD_DIR=${SYSTEMD_DIR:-/etc/systemd/system}
BIN_DIR=${BIN_DIR:-/usr/local/bin}
PYTHON=${PYTHON:-python3}
NO_SYSTEMCTL=${NO_SYSTEMCTL:-}
NO_START=${NO_START:-}
ALLOW_NON_ROOT=${ALLOW_NON_ROOT:-}

UNIT=daemond.service
# Paths as written in the shipped unit; rewritten when PREFIX/ETC_DIR differ.
UNIT_PREFIX=/opt/daemond
UNIT_ETC_DIR=/etc/daemond

say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

if [[ $(id -u) -ne 0 && $ALLOW_NON_ROOT != 1 ]]; then
    die "must run as root (try: sudo $0 ${1:-})"
fi

script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
SRC=${1:-$script_dir/..}
[[ -d $SRC ]] || die "source directory not found: $SRC"
SRC=$(cd -- "$SRC" && pwd)

for f in pyproject.toml etc/daemond.yaml systemd/$UNIT; do
    [[ -f $SRC/$f ]] || die "$SRC does not look like a daemond clone: missing $f"
done

# 1. venv + package ----------------------------------------------------------
venv=$PREFIX/venv
if [[ -x $venv/bin/python ]]; then
    say "venv $venv exists, reusing it"
else
    say "creating venv $venv"
    install -d -m 0755 "$PREFIX"
    "$PYTHON" -m venv "$venv"
fi
say "installing daemond from $SRC into $venv"
"$venv/bin/pip" install --disable-pip-version-check --quiet "$SRC"

# 2. config (never overwritten) ----------------------------------------------
install -d -m 0755 "$ETC_DIR"
if [[ -e $ETC_DIR/daemond.yaml ]]; then
    say "keeping existing $ETC_DIR/daemond.yaml (shipped default: $SRC/etc/daemond.yaml)"
else
    say "installing default config $ETC_DIR/daemond.yaml"
    # World-readable: the service runs as a DynamicUser= that must read it.
    install -m 0644 "$SRC/etc/daemond.yaml" "$ETC_DIR/daemond.yaml"
fi

# 3. unit + docs -------------------------------------------------------------
install -d -m 0755 "$SYSTEMD_DIR"
tmp_unit=$(mktemp)
trap 'rm -f "$tmp_unit"' EXIT
sed -e "s#$UNIT_PREFIX/#$PREFIX/#g" -e "s#$UNIT_ETC_DIR/#$ETC_DIR/#g" \
    "$SRC/systemd/$UNIT" >"$tmp_unit"
if cmp -s "$tmp_unit" "$SYSTEMD_DIR/$UNIT"; then
    say "$SYSTEMD_DIR/$UNIT is up to date"
else
    say "installing $SYSTEMD_DIR/$UNIT"
    install -m 0644 "$tmp_unit" "$SYSTEMD_DIR/$UNIT"
fi
if [[ -f $SRC/docs/operations.md ]]; then
    install -D -m 0644 "$SRC/docs/operations.md" "$PREFIX/docs/operations.md"
fi
install -d -m 0755 "$BIN_DIR"
ln -sfn "$venv/bin/daemonctl" "$BIN_DIR/daemonctl"

# 4. systemd -----------------------------------------------------------------
if [[ $NO_SYSTEMCTL == 1 ]]; then
    say "NO_SYSTEMCTL=1: not calling systemctl"
    exit 0
fi
systemctl daemon-reload
systemctl enable "$UNIT"
if [[ $NO_START == 1 ]]; then
    say "NO_START=1: enabled, not started"
elif systemctl is-active --quiet "$UNIT"; then
    say "restarting running $UNIT onto the new code"
    systemctl restart "$UNIT"
else
    say "starting $UNIT"
    systemctl start "$UNIT"
fi
systemctl --no-pager --lines=0 status "$UNIT" || true

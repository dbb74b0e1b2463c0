#!/usr/bin/env bash
# setup.sh — installs what sluice-bench needs beyond Rust, with apt-get, when
# missing: fio (the disk limit, scripts/disk-limit.sh) and a TrueType font
# for the PNG charts (fonts-dejavu-core). Idempotent; run as root or with sudo.
set -euo pipefail

log() { printf '[setup] %s\n' "$*" >&2; }

SUDO=
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null 2>&1; then
    SUDO=sudo
fi

missing=()
command -v fio >/dev/null 2>&1 || missing+=(fio)
[[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || missing+=(fonts-dejavu-core)

if [[ ${#missing[@]} -eq 0 ]]; then
    log "fio and fonts-dejavu-core are already installed"
    exit 0
fi
log "installing ${missing[*]}"
if ! $SUDO apt-get install -y "${missing[@]}"; then
    log "apt-get install failed; running apt-get update and retrying"
    $SUDO apt-get update
    $SUDO apt-get install -y "${missing[@]}"
fi

#!/usr/bin/env bash
# page-cache-drop.sh — flush dirty data and drop the kernel page cache, dentries
# and inodes (sync; echo 3 > /proc/sys/vm/drop_caches), so a following read
# benchmark starts cold.
#
# Exit status: 0 when the caches were dropped, and also 0 (with a warning on
# stderr) when this environment does not permit it (not root, read-only /proc/sys
# as in most containers) so benchmark scripts can call it unconditionally.
# Prints "dropped" or "skipped" on stdout for scripts that want to record it.
set -euo pipefail

warn() { printf '[page-cache-drop] warning: %s\n' "$*" >&2; }

sync

ctl=/proc/sys/vm/drop_caches
if [[ ! -e $ctl ]]; then
    warn "$ctl does not exist here; page cache NOT dropped (read benchmarks may be warm)"
    echo skipped
    exit 0
fi

# The write is done in a subshell so its failure is caught rather than fatal.
if err=$( (echo 3 >"$ctl") 2>&1); then
    printf '[page-cache-drop] page cache, dentries and inodes dropped\n' >&2
    echo dropped
    exit 0
fi

why=${err##*: }
[[ -n $why ]] || why="write refused"
if [[ $(id -u) -ne 0 ]]; then
    why="$why (not running as root; try sudo)"
elif ! [[ -w $ctl ]] || grep -qs ' /proc/sys .*\bro\b' /proc/mounts; then
    why="$why (/proc/sys is read-only here, typical of containers without CAP_SYS_ADMIN)"
fi
warn "could not write 3 to $ctl: $why; page cache NOT dropped (read benchmarks may be warm)"
echo skipped
exit 0

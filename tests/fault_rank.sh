#!/bin/bash
# A real I/O fault on one rank or one node: runs the command in a mount namespace of its own where the directory
# SPPO_TEST_FAULT_DIR is read-only (SPPO_TEST_FAULT=readonly) or a full 64 KiB tmpfs (SPPO_TEST_FAULT=full).
#   torchrun --no-python ... tests/fault_rank.sh python -m sppo.cli ...   # only the rank SPPO_TEST_FAULT_RANK
#   tests/fault_rank.sh scripts/slurm/launch-node.sh sppo.cli ...         # a whole node (SPPO_TEST_FAULT_RANK unset)
# Every other rank runs the command unchanged. Needs root (mount namespaces).
set -euo pipefail
if [[ -n "${SPPO_TEST_FAULT_RANK:-}" && "${RANK:-}" != "$SPPO_TEST_FAULT_RANK" ]]; then
    exec "$@"
fi
mkdir -p "$SPPO_TEST_FAULT_DIR"
case "${SPPO_TEST_FAULT:-}" in
    readonly) setup='mount --bind "$SPPO_TEST_FAULT_DIR" "$SPPO_TEST_FAULT_DIR" &&
                     mount -o remount,bind,ro "$SPPO_TEST_FAULT_DIR"' ;;
    full) setup='mount -t tmpfs -o size=64k tmpfs "$SPPO_TEST_FAULT_DIR" &&
                 { dd if=/dev/zero of="$SPPO_TEST_FAULT_DIR/.filler" bs=4k 2>/dev/null || true; }' ;;
    *) echo "fault_rank.sh: SPPO_TEST_FAULT must be readonly or full" >&2; exit 2 ;;
esac
exec unshare --mount --propagation private bash -c "$setup"' && exec "$@"' fault_rank "$@"

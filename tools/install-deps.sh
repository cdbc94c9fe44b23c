#!/usr/bin/env bash
# Install the Debian packages lgdbg's demo or tests need, only those missing.
#   tools/install-deps.sh demo   gdb (for `lgdbg gdb`)
#   tools/install-deps.sh test   + binutils/gcc (example rebuilds), lldb, QEMU,
#                                tmux, chromium (the real peers the tests use),
#                                e2fsprogs (ext2 images for the 3.2 virtio disk)
set -euo pipefail
want=(gdb)
if [ "${1:-demo}" = test ]; then
  want+=(binutils gcc lldb qemu-system-x86 tmux chromium cpio e2fsprogs)
fi
missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "install-deps: need root to install: ${missing[*]}" >&2; exit 1
  fi
else SUDO=; fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

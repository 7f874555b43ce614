#!/usr/bin/env bash
# Build the Debian package of taskq with CPack and show what it holds.
#
#   scripts/package.sh           # build-pkg/taskq_VERSION_ARCH.deb, then
#                                # dpkg-deb -I and -c of it
#   scripts/package.sh --check   # also install, remove, reinstall and purge
#                                # it in a throwaway copy of this system
#                                # (root; an overlay of / in a private
#                                # mount namespace: the system is untouched)
#
# Needs cmake, dpkg-dev (dpkg-shlibdeps), file and binutils, and scdoc for
# the man pages (scripts/deps.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
case "${1:-}" in
    --check) check=1 ;;
    "") ;;
    *) echo "usage: $0 [--check]" >&2; exit 64 ;;
esac

# /usr: the library in the multiarch directory, the configuration in /etc.
cmake -S . -B build-pkg -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
    -DTASKQ_TESTS=OFF -DTASKQ_EXAMPLES=OFF -DTASKQ_BENCH=OFF -DTASKQ_SANITIZE=OFF >/dev/null
cmake --build build-pkg -j"$(nproc)"
rm -f build-pkg/taskq_*.deb
(cd build-pkg && cpack -G DEB)
deb=$(ls build-pkg/taskq_*.deb)

echo
echo "== dpkg-deb -I $deb"
dpkg-deb -I "$deb"
echo
echo "== dpkg-deb -c $deb"
dpkg-deb -c "$deb"

[ $check -eq 1 ] || exit 0

# The maintainer scripts, run by dpkg in an overlay of / whose changes
# go to a tmpfs and vanish with the mount namespace.
echo
echo "== install, remove, install, purge in a throwaway overlay of /"
[ "$(id -u)" -eq 0 ] || { echo "--check needs root" >&2; exit 1; }
work=$(mktemp -d)
trap 'umount "$work" 2>/dev/null || true; rm -rf "$work"' EXIT
mount -t tmpfs tmpfs "$work"
mkdir "$work/upper" "$work/work" "$work/root"
cp "$deb" "$work/upper/taskq.deb"
cat >"$work/upper/check.sh" <<'CHECK'
set -eu
fail() { echo "FAIL: $*"; exit 1; }
dpkg -i /taskq.deb
getent passwd taskq >/dev/null || fail "no user taskq"
getent passwd taskq-worker >/dev/null || fail "no user taskq-worker"
id -nG taskq-worker | grep -qw taskq || fail "taskq-worker is not in group taskq"
[ -L /etc/systemd/system/multi-user.target.wants/taskqd.service ] || fail "taskqd.service not enabled"
grep -qx /etc/taskq/taskqd.conf /var/lib/dpkg/info/taskq.conffiles || fail "taskqd.conf is not a conffile"
ldconfig -p | grep -q 'libtaskq.so.0 ' || fail "libtaskq.so.0 not in the ld.so cache"
echo "ok: installed: users, enabled (not started), conffile, ld.so cache"
mkdir -p /var/lib/taskq && touch /var/lib/taskq/taskq.db
echo "# changed" >>/etc/taskq/taskqd.conf
dpkg -r taskq
[ -f /var/lib/taskq/taskq.db ] || fail "remove deleted the database"
grep -q '^# changed' /etc/taskq/taskqd.conf || fail "remove lost the changed configuration"
[ -x /usr/bin/taskqd ] && fail "remove left /usr/bin/taskqd"
echo "ok: removed: database and configuration kept"
dpkg -i /taskq.deb
[ -L /etc/systemd/system/multi-user.target.wants/taskqd.service ] || fail "not enabled again"
grep -q '^# changed' /etc/taskq/taskqd.conf || fail "reinstall replaced the changed configuration"
echo "ok: reinstalled: enabled again, configuration kept"
dpkg -P taskq
[ -e /var/lib/taskq ] && fail "purge left /var/lib/taskq"
[ -e /etc/taskq/taskqd.conf ] && fail "purge left /etc/taskq/taskqd.conf"
[ -e /etc/systemd/system/multi-user.target.wants/taskqd.service ] && fail "purge left the enablement"
echo "ok: purged: database, configuration and enablement gone"
CHECK
unshare --mount --propagation private sh -c '
    set -e
    w=$1
    mount -t overlay overlay -o "lowerdir=/,upperdir=$w/upper,workdir=$w/work" "$w/root"
    for d in proc sys dev run; do mount --rbind "/$d" "$w/root/$d"; done
    # No service manager in the copy: systemctl is not called.
    mount -t tmpfs tmpfs "$w/root/run"
    chroot "$w/root" sh /check.sh
' sh "$work"
echo "package check passed"

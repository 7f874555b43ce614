#!/usr/bin/env bash
# The systemd units as they are shipped (systemd/*.service):
#  - `systemd-analyze verify` says nothing about them, with ExecStart= on
#    the programs of this build (a copy of each unit differs from the
#    shipped one in that path only) and, when the man pages were built,
#    with man: links checked against them;
#  - `systemd-analyze security` rates taskqd.service 2.0 or lower;
#  - they hold what the deployment needs (the netlink socket family that
#    tells local users apart, no PrivateUsers=, the directories);
#  - systemd-sysusers accepts systemd/taskq.sysusers and makes both users.
# Exit status 77 (skipped) without systemd-analyze.
#
# usage: check_units.sh SOURCE_DIR TASKQD TASKQ_WORKER [MAN_BUILD_DIR]
set -u

src=$1 taskqd=$2 worker=$3 mandir=${4:-}
if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "check_units: systemd-analyze not found (Debian package systemd): skipped"
    exit 77
fi
for f in "$taskqd" "$worker"; do
    [ -x "$f" ] || { echo "check_units: $f: not built"; exit 1; }
done
taskqd=$(readlink -f "$taskqd") worker=$(readlink -f "$worker")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }

# Man pages from the build, laid out as man(1) looks for them.
man_opt=--man=no
if ! command -v man >/dev/null 2>&1; then
    echo "note: man not found (Debian package man-db): man: links not checked"
elif [ -n "$mandir" ] && [ -f "$mandir/taskqd.8" ] && [ -f "$mandir/taskq-worker.1" ]; then
    for page in "$mandir"/*.[1-9]; do
        section=${page##*.}
        mkdir -p "$tmp/man/man$section"
        cp "$page" "$tmp/man/man$section/"
    done
    man_opt=--man=yes
else
    echo "note: no man pages built (scdoc missing): man: links not checked"
fi

# verify NAME PROGRAM_IN_UNIT BUILT_PROGRAM: the shipped unit, with the
# program's path replaced by the built one, must verify without a word.
verify() {
    local unit=$1 shipped=$2 built=$3
    mkdir -p "$tmp/units"
    sed "s#$shipped#$built#g" "$src/systemd/$unit" >"$tmp/units/$unit"
    grep -q "^ExecStart=$built " "$tmp/units/$unit" ||
        { fail "$unit: ExecStart= does not start with $shipped"; return; }
    local out rc
    out=$(MANPATH="$tmp/man" systemd-analyze verify "$man_opt" "$tmp/units/$unit" 2>&1)
    rc=$?
    if [ $rc -ne 0 ] || [ -n "$out" ]; then
        fail "systemd-analyze verify $unit (exit $rc):"
        printf '%s\n' "$out" | sed 's/^/    /'
    else
        pass "systemd-analyze verify $unit"
    fi
}
verify taskqd.service /usr/bin/taskqd "$taskqd"
verify taskq-worker@.service /usr/bin/taskq-worker "$worker"
# An instance, as systemctl would start it.
cp "$tmp/units/taskq-worker@.service" "$tmp/units/taskq-worker@pool1.service"
out=$(MANPATH="$tmp/man" systemd-analyze verify "$man_opt" "$tmp/units/taskq-worker@pool1.service" 2>&1)
rc=$?
if [ $rc -ne 0 ] || [ -n "$out" ]; then
    fail "systemd-analyze verify taskq-worker@pool1.service (exit $rc):"
    printf '%s\n' "$out" | sed 's/^/    /'
else
    pass "systemd-analyze verify taskq-worker@pool1.service"
fi

# The exposure of the shipped taskqd.service: 2.0 or lower.
out=$(systemd-analyze security --offline=yes --no-pager "$src/systemd/taskqd.service" 2>&1)
level=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for taskqd\.service: \([0-9.]*\).*/\1/p')
if [ -z "$level" ]; then
    fail "systemd-analyze security taskqd.service: no exposure level in its output:"
    printf '%s\n' "$out" | tail -5 | sed 's/^/    /'
elif awk -v l="$level" 'BEGIN { exit !(l <= 2.0) }'; then
    pass "systemd-analyze security taskqd.service: exposure $level (at most 2.0)"
else
    fail "systemd-analyze security taskqd.service: exposure $level, above 2.0:"
    printf '%s\n' "$out" | grep '✗' | sed 's/^/    /'
fi

# What the deployment relies on.
before=$failures
# want UNIT LINE: the unit has exactly this line.
want() {
    grep -qxF -- "$2" "$src/systemd/$1" && return
    fail "$1: no line '$2'"
}
# refuse UNIT REGEX: no line of the unit matches.
refuse() {
    grep -qE -- "$2" "$src/systemd/$1" || return
    fail "$1: a line matches '$2'"
}
u=taskqd.service
for line in Type=notify \
    'ExecStart=/usr/bin/taskqd --config /etc/taskq/taskqd.conf' \
    'ExecReload=/bin/kill -HUP $MAINPID' User=taskq Group=taskq \
    StateDirectory=taskq RuntimeDirectory=taskq ConfigurationDirectory=taskq \
    WatchdogSec=30 Restart=on-failure ProtectSystem=strict; do
    want $u "$line"
done
# sock_diag needs AF_NETLINK and the host's network namespace; the uids it
# reports are only right outside a user namespace.
grep -qE '^RestrictAddressFamilies=.*AF_NETLINK' "$src/systemd/$u" ||
    fail "$u: AF_NETLINK not allowed (taskqd asks sock_diag who owns a local TCP connection)"
refuse $u '^(PrivateUsers|PrivateNetwork|DynamicUser)=(yes|true|1|on)'
refuse $u '^IPAddressDeny='
u=taskq-worker@.service
for line in 'ExecStart=/usr/bin/taskq-worker --config /etc/taskq/worker-%i.conf' \
    Restart=always User=taskq-worker; do
    want $u "$line"
done
# User programs may JIT, so no MemoryDenyWriteExecute= for the worker.
refuse $u '^MemoryDenyWriteExecute=(yes|true|1|on)'
[ $failures -eq "$before" ] && pass "unit contents"

# The system users.
if command -v systemd-sysusers >/dev/null 2>&1; then
    mkdir -p "$tmp/root/etc" "$tmp/root/usr/lib/sysusers.d"
    : >"$tmp/root/etc/passwd"
    : >"$tmp/root/etc/group"
    cp "$src/systemd/taskq.sysusers" "$tmp/root/usr/lib/sysusers.d/taskq.conf"
    out=$(systemd-sysusers --root="$tmp/root" --dry-run taskq.conf 2>&1)
    rc=$?
    if [ $rc -ne 0 ] ||
        ! printf '%s\n' "$out" | grep -q "Creating user 'taskq' " ||
        ! printf '%s\n' "$out" | grep -q "Creating user 'taskq-worker' " ||
        printf '%s\n' "$out" | grep -qi 'ignor\|fail\|invalid'; then
        fail "systemd-sysusers taskq.conf (exit $rc):"
        printf '%s\n' "$out" | sed 's/^/    /'
    else
        pass "systemd-sysusers taskq.conf"
    fi
else
    echo "note: systemd-sysusers not found: taskq.sysusers not checked"
fi

if [ $failures -ne 0 ]; then
    echo "check_units: $failures failure(s)"
    exit 1
fi
echo "check_units: all passed"

#!/usr/bin/env bash
# The install, as a user gets it: a fresh configure of the source tree
# with a temporary prefix, built and installed there; then
#  - the tree holds what it should (programs, header, the library with its
#    soname links, taskq.pc, the CMake package, the units, the sysusers
#    snippet, the example configurations, the man pages when scdoc is
#    installed), the installed programs run from there, and the installed
#    units verify;
#  - the example configurations name every option of the programs, and
#    nothing else;
#  - tests/install/ is built out of tree against the prefix twice, with
#    pkg-config (its Makefile) and with find_package(taskq) (its
#    CMakeLists.txt), each a shared and a static program;
#  - the installed taskqd runs in memory on a free loopback port, and every
#    program built runs its tasks through it.
#
# usage: check_install.sh SOURCE_DIR [C_COMPILER]
# (TMPDIR chooses where the temporary tree goes; KEEP=1 keeps it.)
set -u

src=$(readlink -f "$1")
cc=${2:-${CC:-cc}}
tmp=$(mktemp -d)
prefix=$tmp/prefix
taskqd_pid=

cleanup() {
    if [ -n "$taskqd_pid" ]; then
        kill -TERM "$taskqd_pid" 2>/dev/null
        wait "$taskqd_pid" 2>/dev/null
    fi
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }
die() { echo "FAIL: $*"; echo "check_install: stopped"; exit 1; }
# run LOG CMD...: run a step quietly; on failure show the end of its log.
run() {
    local log=$1
    shift
    if ! "$@" >"$log" 2>&1; then
        echo "  $* failed:"
        tail -30 "$log" | sed 's/^/    /'
        return 1
    fi
}
jobs=$(nproc 2>/dev/null || echo 2)

# 1. Configure, build and install.
run "$tmp/configure.log" cmake -S "$src" -B "$tmp/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_INSTALL_PREFIX="$prefix" \
    -DTASKQ_TESTS=OFF -DTASKQ_EXAMPLES=OFF -DTASKQ_BENCH=OFF -DTASKQ_SANITIZE=OFF ||
    die "configure"
run "$tmp/build.log" cmake --build "$tmp/build" -j "$jobs" || die "build"
run "$tmp/install.log" cmake --install "$tmp/build" || die "install"
pass "configured, built and installed into a temporary prefix"
libdir=$(sed -n 's/^CMAKE_INSTALL_LIBDIR:[A-Z]*=//p' "$tmp/build/CMakeCache.txt")
[ -n "$libdir" ] || die "no CMAKE_INSTALL_LIBDIR in the cache"
lib=$prefix/$libdir

# 2. The installed tree.
before=$failures
for f in bin/taskqd bin/taskq-worker bin/taskq; do
    if [ ! -f "$prefix/$f" ] || [ ! -x "$prefix/$f" ]; then
        fail "$f: missing or not executable"
    fi
done
for f in include/taskq.h "$libdir/libtaskq.a" "$libdir/pkgconfig/taskq.pc" \
    "$libdir/cmake/taskq/taskqConfig.cmake" "$libdir/cmake/taskq/taskqConfigVersion.cmake" \
    "$libdir/cmake/taskq/taskqTargets.cmake" \
    lib/systemd/system/taskqd.service "lib/systemd/system/taskq-worker@.service" \
    lib/sysusers.d/taskq.conf etc/taskq/taskqd.conf \
    share/doc/taskq/examples/worker-example.conf; do
    [ -f "$prefix/$f" ] || fail "$f: missing"
done
ls "$lib"/cmake/taskq/taskqTargets-*.cmake >/dev/null 2>&1 ||
    fail "$libdir/cmake/taskq: no per-configuration taskqTargets-*.cmake"
# The shared library: the file named by its version, the soname link to
# it, the link for the linker to the soname, and the soname inside.
version=$(sed -n 's/^project(taskq VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
real=libtaskq.so.$version
soname=libtaskq.so.${version%%.*}
if [ ! -f "$lib/$real" ] || [ -L "$lib/$real" ]; then
    fail "$libdir/$real: missing or not a file"
fi
[ "$(readlink "$lib/$soname")" = "$real" ] || fail "$libdir/$soname: not a link to $real"
[ "$(readlink "$lib/libtaskq.so")" = "$soname" ] || fail "$libdir/libtaskq.so: not a link to $soname"
got=$(LC_ALL=C readelf -d "$lib/$real" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$got" = "$soname" ] || fail "$real: soname '$got', not $soname"
# Man pages, one for each man/NAME.SECTION.scd, when scdoc is installed.
if command -v scdoc >/dev/null 2>&1; then
    for scd in "$src"/man/*.scd; do
        [ -e "$scd" ] || continue
        page=$(basename "$scd" .scd)
        [ -f "$prefix/share/man/man${page##*.}/$page" ] || fail "man page $page: not installed"
    done
else
    echo "note: scdoc not found: no man pages to look for"
fi
# The installed units name the installed programs and configuration.
grep -qxF "ExecStart=$prefix/bin/taskqd --config $prefix/etc/taskq/taskqd.conf" \
    "$prefix/lib/systemd/system/taskqd.service" ||
    fail "installed taskqd.service: ExecStart= does not name $prefix/bin/taskqd"
grep -qxF "ExecStart=$prefix/bin/taskq-worker --config $prefix/etc/taskq/worker-%i.conf" \
    "$prefix/lib/systemd/system/taskq-worker@.service" ||
    fail "installed taskq-worker@.service: ExecStart= does not name $prefix/bin/taskq-worker"
# The programs run from the prefix, finding libtaskq.so there.
for p in taskqd taskq-worker taskq; do
    out=$(env -u LD_LIBRARY_PATH "$prefix/bin/$p" --version 2>&1) ||
        fail "$p --version: $out"
done
[ $failures -eq "$before" ] && pass "installed tree"

# The installed units, with the installed programs (and man pages).
if command -v systemd-analyze >/dev/null 2>&1; then
    man_opt=--man=no
    [ -f "$prefix/share/man/man8/taskqd.8" ] && [ -f "$prefix/share/man/man1/taskq-worker.1" ] &&
        command -v man >/dev/null 2>&1 && man_opt=--man=yes
    for unit in taskqd.service taskq-worker@.service; do
        out=$(MANPATH="$prefix/share/man" systemd-analyze verify "$man_opt" \
            "$prefix/lib/systemd/system/$unit" 2>&1)
        rc=$?
        if [ $rc -ne 0 ] || [ -n "$out" ]; then
            fail "systemd-analyze verify installed $unit (exit $rc):"
            printf '%s\n' "$out" | sed 's/^/    /'
        else
            pass "systemd-analyze verify installed $unit"
        fi
    done
else
    echo "note: systemd-analyze not found: installed units not verified"
fi

# 3. The example configurations against the programs' options.
# options PROGRAM: its long options, one a line, from --help.
options() {
    "$1" --help 2>&1 | grep -oE '^ +(-[a-zA-Z], )?--[a-z][a-z0-9-]*' | sed 's/.*--//' | sort -u
}
# keys FILE: the keys the file sets or shows commented out.
keys() {
    grep -oE '^[#;]?[a-z][a-z0-9-]* *=' "$1" | sed 's/^[#;]//; s/ *=$//' | sort -u
}
# compare_config PROGRAM FILE: each option but help, version, config and
# check-config is in the file, and the file has no other key.
compare_config() {
    local prog=$1 file=$2 name
    name=$(basename "$prog")
    options "$prog" | grep -vxE 'help|version|config|check-config' >"$tmp/options"
    keys "$file" >"$tmp/keys"
    if [ ! -s "$tmp/options" ]; then
        fail "$name --help: no long options found"
        return
    fi
    local missing extra
    missing=$(comm -23 "$tmp/options" "$tmp/keys" | tr '\n' ' ')
    extra=$(comm -13 "$tmp/options" "$tmp/keys" | tr '\n' ' ')
    [ -z "$missing" ] || fail "$(basename "$file"): no line for option(s) of $name: $missing"
    [ -z "$extra" ] || fail "$(basename "$file"): key(s) that $name does not know: $extra"
    [ -z "$missing$extra" ] && pass "$(basename "$file"): one line for each option of $name"
}
compare_config "$prefix/bin/taskqd" "$prefix/etc/taskq/taskqd.conf"
compare_config "$prefix/bin/taskq-worker" "$prefix/share/doc/taskq/examples/worker-example.conf"
# The broker accepts its example configuration (the binds, the database
# and the worker users replaced, since /run/taskq, /var/lib/taskq and the
# user taskq-worker are the package's).
if "$prefix/bin/taskqd" --help 2>&1 | grep -q -- '--check-config'; then
    out=$("$prefix/bin/taskqd" --config "$prefix/etc/taskq/taskqd.conf" --check-config \
        --bind 'tcp://127.0.0.1:*' --db "$tmp/check.db" --worker-user root 2>&1)
    rc=$?
    if [ $rc -eq 0 ]; then
        pass "taskqd --check-config with the example configuration"
    else
        fail "taskqd --check-config with the example configuration (exit $rc): $out"
    fi
else
    echo "note: taskqd has no --check-config: the example configuration not checked by it"
fi

# 4. tests/install/ out of tree: pkg-config, then the CMake package.
mkdir -p "$tmp/oot-pc"
if run "$tmp/oot-pc.log" env PKG_CONFIG_PATH="$lib/pkgconfig" \
    make -C "$tmp/oot-pc" -f "$src/tests/install/Makefile" srcdir="$src/tests/install" \
    CC="$cc"; then
    pass "tests/install built with pkg-config"
else
    fail "tests/install: the pkg-config build"
fi
if run "$tmp/oot-cmake.log" cmake -S "$src/tests/install" -B "$tmp/oot-cmake" \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_PREFIX_PATH="$prefix" &&
    run "$tmp/oot-cmake-build.log" cmake --build "$tmp/oot-cmake" -j "$jobs"; then
    pass "tests/install built with find_package(taskq)"
else
    fail "tests/install: the CMake build"
fi
# The static programs need no libtaskq.so.
for p in "$tmp/oot-pc/install_check_static" "$tmp/oot-cmake/install_check_static"; do
    [ -x "$p" ] || continue
    if LC_ALL=C readelf -d "$p" | grep -q 'NEEDED.*libtaskq'; then
        fail "$p: needs libtaskq.so"
    fi
done

# 5. The installed broker, and each program through it.  --config ''
# keeps it from reading a system-wide /etc/taskq/taskqd.conf.
no_config=()
"$prefix/bin/taskqd" --help 2>&1 | grep -q -- '--config' && no_config=(--config '')
"$prefix/bin/taskqd" "${no_config[@]}" --bind 'tcp://127.0.0.1:*' --memory \
    --ready-file "$tmp/ready" >"$tmp/taskqd.log" 2>&1 &
taskqd_pid=$!
for _ in $(seq 100); do
    [ -s "$tmp/ready" ] && break
    kill -0 "$taskqd_pid" 2>/dev/null || break
    sleep 0.1
done
endpoint=$(head -n 1 "$tmp/ready" 2>/dev/null)
if [ -z "$endpoint" ]; then
    sed 's/^/    /' "$tmp/taskqd.log"
    die "the installed taskqd did not start"
fi
pass "installed taskqd serving on $endpoint"
if out=$(env -u LD_LIBRARY_PATH "$prefix/bin/taskq" --broker "$endpoint" ping 2>&1); then
    pass "installed taskq ping: $out"
else
    fail "installed taskq ping: $out"
fi
for p in oot-pc/install_check oot-pc/install_check_static \
    oot-cmake/install_check oot-cmake/install_check_static; do
    [ -x "$tmp/$p" ] || { fail "$p: not built"; continue; }
    out=$(env -u LD_LIBRARY_PATH timeout 60 "$tmp/$p" "$endpoint" 50 2>&1)
    rc=$?
    if [ $rc -eq 0 ] && printf '%s\n' "$out" | grep -qx 'ok 50 tasks'; then
        pass "$p: 50 tasks through the installed taskqd"
    else
        fail "$p (exit $rc):"
        printf '%s\n' "$out" | sed 's/^/    /'
    fi
done
kill -TERM "$taskqd_pid"
wait "$taskqd_pid"
rc=$?
taskqd_pid=
if [ $rc -eq 0 ]; then
    pass "taskqd stopped by SIGTERM"
else
    fail "taskqd exited $rc after SIGTERM"
fi

if [ $failures -ne 0 ]; then
    echo "check_install: $failures failure(s)"
    exit 1
fi
echo "check_install: all passed"

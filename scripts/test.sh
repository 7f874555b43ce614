#!/usr/bin/env bash
# All tests, from a fresh clone: install dependencies, build with warnings
# as errors and run the suite, then the same under AddressSanitizer and
# UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

scripts/deps.sh

cmake -S . -B build -DTASKQ_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure)

cmake -S . -B build-asan -DTASKQ_WERROR=ON -DTASKQ_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
   CK_TIMEOUT_MULTIPLIER=3 ctest --output-on-failure)

#!/usr/bin/env bash
# Static analysis of src/: clang-tidy (.clang-tidy) and cppcheck
# (.cppcheck-suppressions.xml) over every .c file in src/ and src/state/,
# with the headers of src/ and include/ they include. Exits 1 on any finding
# of either tool, after running both; prints the findings, then a summary.
#   scripts/lint.sh
# LINT_JOBS sets the parallelism (default: nproc). Needs scripts/deps.sh.
#
# False positives are silenced where they occur, with the reason:
#   clang-tidy  /* NOLINT(check): reason */ or NOLINTNEXTLINE(check)
#   cppcheck    /* cppcheck-suppress id ; reason */ on the line above
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in clang-tidy cppcheck cmake; do
  command -v "$tool" >/dev/null ||
    { echo "lint: $tool not found; run scripts/deps.sh" >&2; exit 2; }
done
jobs=${LINT_JOBS:-$(nproc)}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

mapfile -t files < <(find src -name '*.c' | LC_ALL=C sort)
[ ${#files[@]} -gt 0 ] || { echo "lint: no .c files under src/" >&2; exit 2; }

# clang-tidy reads the flags of each file from compile_commands.json. A Debug
# configuration keeps assert() (no NDEBUG), so the analyzer assumes what the
# code asserts. Nothing needs building: src/ includes no generated file.
db=build/analysis
cmake -S . -B "$db" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
  -DTP_BUILD_TESTS=OFF -DTP_BUILD_BENCH=OFF >/dev/null

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
dedup() { grep -E '^[^ ].*:[0-9]+:[0-9]+: (warning|error): ' "$1" | LC_ALL=C sort -u || true; }

# clang-tidy: one process per file, each with its own log so that parallel
# output does not interleave. A finding in a header is reported once per
# translation unit that includes it; the count below is of unique findings.
t0=$(now)
tidy_rc=0
printf '%s\0' "${files[@]}" |
  xargs -0 -P "$jobs" -I{} sh -c \
    'clang-tidy -p "$1" --quiet --extra-arg=-Wno-unknown-warning-option "$2" \
       >"$3/tidy.$(echo "$2" | tr / _).log" 2>&1' _ "$db" {} "$out" ||
  tidy_rc=$?
t1=$(now)
cat "$out"/tidy.*.log | grep -vE '^[0-9]+ (warning|error)s? generated\.$' >"$out/tidy.txt" || true
dedup "$out/tidy.txt" >"$out/tidy.uniq"
tidy_n=$(wc -l <"$out/tidy.uniq")
tidy_checks=$(clang-tidy -p "$db" --list-checks "${files[0]}" | tail -n +2 | grep -c .)
if [ "$tidy_n" -gt 0 ] || [ "$tidy_rc" -ne 0 ]; then
  cat "$out/tidy.txt"
fi

# cppcheck: explicit include paths and the one definition CMake adds
# (_GNU_SOURCE), so only the configuration we build is checked. Not
# --project: the database also lists build/.../embedded.c, which is
# generated and would have to be built first.
cppcheck_severities=warning,style,performance,portability
t2=$(now)
cppcheck_rc=0
cppcheck --std=c11 --platform=unix64 --library=posix -I include -I src -D_GNU_SOURCE \
  --enable="$cppcheck_severities" --inline-suppr \
  --suppress-xml=.cppcheck-suppressions.xml --error-exitcode=1 -j "$jobs" --quiet \
  --template='{file}:{line}:{column}: {severity}: {message} [{id}]\n{code}' \
  "${files[@]}" 2>"$out/cppcheck.txt" || cppcheck_rc=$?
t3=$(now)
cppcheck_n=$(grep -cE '^[^ ].*:[0-9]+:[0-9]+: [a-z]+: .* \[[A-Za-z0-9_]+\]$' "$out/cppcheck.txt" || true)
if [ "$cppcheck_n" -gt 0 ] || [ "$cppcheck_rc" -ne 0 ]; then
  cat "$out/cppcheck.txt"
fi

printf 'lint: clang-tidy %s: %d files, %d checks, %d findings (%ss)\n' \
  "$(clang-tidy --version | sed -n 's/.*version \([0-9.]*\).*/\1/p' | head -1)" \
  "${#files[@]}" "$tidy_checks" "$tidy_n" "$(secs "$t0" "$t1")"
printf 'lint: cppcheck %s: %d files, %s, %d findings (%ss)\n' \
  "$(cppcheck --version | sed 's/^Cppcheck //')" "${#files[@]}" \
  "$cppcheck_severities" "$cppcheck_n" "$(secs "$t2" "$t3")"
if [ "$tidy_n" -gt 0 ] || [ "$tidy_rc" -ne 0 ] || [ "$cppcheck_n" -gt 0 ] || [ "$cppcheck_rc" -ne 0 ]; then
  echo "lint: FAILED" >&2
  exit 1
fi
echo "lint: ok"

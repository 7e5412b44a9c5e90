# Helpers for end-to-end test scripts: same line format as the unit tests.
# Scripts run from the repository root with BIN pointing at build/bin.
BIN=${BIN:-build/bin}
SHARED=${FEWSAM_SHARED:-../shared}
TMP_BASE=${FEWSAM_TEST_TMP:-build/tmp}
failures=0
pass() { echo "ok $1"; }
fail() { echo "FAIL $1: ${2:-}"; failures=$((failures + 1)); }
skip() { echo "skip $1: ${2:-}"; }
# check NAME CMD...: passes when the command succeeds.
check() { local n=$1; shift; if "$@" >/dev/null 2>&1; then pass "$n"; else fail "$n" "command failed: $*"; fi; }
scratch() { local d="$TMP_BASE/$1"; rm -rf "$d"; mkdir -p "$d"; echo "$d"; }
# expect_error NAME PATTERN CMD...: the command must fail (exit != 0) with
# stderr matching PATTERN.
expect_error() {
  local n=$1 pat=$2; shift 2
  local err rc
  err=$("$@" 2>&1 >/dev/null); rc=$?
  if [ $rc -eq 0 ]; then fail "$n" "exit 0, expected an error"; return; fi
  if ! grep -qE -- "$pat" <<<"$err"; then fail "$n" "stderr does not match '$pat': $err"; return; fi
  pass "$n"
}
finish() { [ $failures -eq 0 ]; exit $?; }

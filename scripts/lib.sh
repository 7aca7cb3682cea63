# Helpers for scripts/test and scripts/dev: install what a fresh machine lacks, then get out of the
# way. Every install is checked first, so a second run costs nothing.

repo_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }

say() { printf '\n==> %s\n' "$*" >&2; }

die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The version of a crate pinned in Cargo.lock.
locked_version() {
  awk -v name="$1" '$0 == "name = \"" name "\"" { getline; gsub(/version = |"/, ""); print; exit }' \
    "$(repo_root)/Cargo.lock"
}

ensure_wasm_target() {
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    say "installing the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
}

# wasm-bindgen-cli must be exactly the wasm-bindgen version in Cargo.lock (its test runner and
# bindgen refuse other versions).
ensure_wasm_bindgen() {
  local version
  version=$(locked_version wasm-bindgen)
  [ -n "$version" ] || die "wasm-bindgen is not in Cargo.lock"
  if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $NF}')" != "$version" ]; then
    say "installing wasm-bindgen-cli $version (a few minutes, once)"
    # --locked first for reproducibility; if a crate it locks is not served by the registry,
    # fall back to resolving compatible versions.
    cargo install wasm-bindgen-cli --version "$version" --locked \
      || cargo install wasm-bindgen-cli --version "$version"
  fi
}

# The node packages in package-lock.json (wrangler, esbuild, wasm-opt), installed when missing or
# older than the lock file.
ensure_node_modules() {
  local root
  root=$(repo_root)
  if [ ! -x "$root/node_modules/.bin/wrangler" ] \
    || [ "$root/package-lock.json" -nt "$root/node_modules/.package-lock.json" ]; then
    say "installing node packages (npm ci)"
    (cd "$root" && npm ci --no-audit --no-fund)
  fi
}

# Wrangler, offline and quiet: no metrics, no Request.cf fetch.
wrangler() {
  WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false \
    "$(repo_root)/node_modules/.bin/wrangler" "$@"
}

# The control plane's test suite runs once on SQLite and once on PostgreSQL. The PostgreSQL half
# creates a database per test on the server at KEYGATE_TEST_POSTGRES_URL (default: this machine's
# postgres://postgres@127.0.0.1:5432/test). CI must have it; elsewhere an unreachable server means
# those tests are skipped, and this says so loudly.
POSTGRES_SKIPPED=""
# What scripts/dev runs: the control plane and the local echo origin, as scripts/dev builds them.
# scripts/test builds them too, so that scripts/dev right after it rebuilds nothing (cargo keeps
# this feature set beside the test build's; it unifies dependencies' features differently).
build_dev_binaries() {
  cargo build -q --locked -p keygate-e2e --example dev_origin
  cargo build -q --locked -p keygate-control-plane
}

ensure_test_postgres() {
  local url="${KEYGATE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
  local authority="${url#*://}"
  authority="${authority%%/*}"
  authority="${authority##*@}"
  local host="${authority%%:*}" port=5432
  [[ "$authority" == *:* ]] && port="${authority##*:}"
  if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
    export KEYGATE_TEST_POSTGRES_URL="$url"
    say "PostgreSQL for the control-plane tests: $host:$port"
  elif [[ "${CI:-}" == "true" ]]; then
    die "PostgreSQL is not reachable at $host:$port (KEYGATE_TEST_POSTGRES_URL); CI runs the control-plane tests on it"
  else
    unset KEYGATE_TEST_POSTGRES_URL
    POSTGRES_SKIPPED="PostgreSQL is not reachable at $host:$port: the control plane's PostgreSQL tests were SKIPPED (set KEYGATE_TEST_POSTGRES_URL=postgres://USER@HOST:PORT/DB to run them)"
    printf '\n!!! %s\n' "$POSTGRES_SKIPPED" >&2
  fi
}

# Chromium and chromedriver (Debian's) for the dashboard's browser tests: installed with apt-get
# when missing and possible. Without them the browser tests skip loudly, except in CI, where
# they fail (tests/src/browser.rs).
BROWSER_SKIPPED=""
ensure_browser() {
  if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    return
  fi
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    say "installing chromium and chromium-driver (apt-get) for the dashboard's browser tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
      || say "apt-get could not install them"
  fi
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    [[ "${CI:-}" == "true" ]] && die "chromium and chromedriver are missing; CI runs the dashboard's browser tests"
    BROWSER_SKIPPED="chromium/chromedriver are missing: the dashboard's browser tests were SKIPPED (apt-get install chromium chromium-driver)"
    printf '\n!!! %s\n' "$BROWSER_SKIPPED" >&2
  fi
}

# Repeats the skip warnings at the end, where they cannot be missed.
report_skips() {
  local skipped
  for skipped in "$POSTGRES_SKIPPED" "$BROWSER_SKIPPED"; do
    if [[ -n "$skipped" ]]; then
      printf '\n!!! %s\n' "$skipped" >&2
    fi
  done
}

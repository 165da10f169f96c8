#!/usr/bin/env bash
# Set up a Debian 12 machine for tributary, then build, test or run it.
#
#   scripts/setup.sh              install dependencies, configure and build the release preset
#   scripts/setup.sh --deps-only  install dependencies only
#   scripts/setup.sh --test       install dependencies, build the ci preset, run every test
#   scripts/setup.sh --run [ARG]  install dependencies, build release, exec `tributary run ARG...`
#   scripts/setup.sh --peers [ARG]  also install the Python peers' packages, build release and
#                                 run bench/peers/run_peers.py ARG... (BENCHMARKS.md)
#
# Run it as root, or as a user with sudo: only apt-get is run through sudo, so the build
# tree and .deps/ stay owned by the user. Idempotent: on a machine that already has
# everything it installs nothing, runs no apt-get and reaches no registry.
set -euo pipefail

# Debian packages the code needs today. A capability that needs another library adds its
# package here (and its find_package to cmake/TributaryDependencies.cmake).
PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libsimdjson-dev libyaml-cpp-dev libcli11-dev libspdlog-dev libfmt-dev
  libproj-dev proj-data
  libsqlite3-dev sqlite3 gdal-bin
  libgtest-dev libgmock-dev libbenchmark-dev
  libcpp-httplib-dev
  libpaho-mqtt-dev libssl-dev mosquitto mosquitto-clients
  libgdal-dev libgeos-dev libnanoflann-dev libeigen3-dev
  librdkafka-dev libpq-dev libcurl4-openssl-dev
  libs2-dev
  postgresql-15 postgresql-15-postgis-3 influxdb
  nodejs npm
  chromium
  zlib1g-dev libzstd-dev libnetcdf-dev
)

# The reference Python stack the peer benchmarks compare with (bench/peers/); only
# `--peers` installs it.
PEER_PACKAGES=(python3 python3-numpy python3-pandas python3-shapely python3-pyproj python3-scipy)

# DuckDB has no Debian package. When the system has none, its prebuilt libduckdb.so comes
# from the npm package @duckdb/node-bindings-<platform> and the matching duckdb.h from the
# npm package duckdb. The two are published with different version schemes: duckdb as
# X.Y.Z, the bindings as X.Y.Z-r.N (rebuilds of the same DuckDB X.Y.Z). The pin below is
# the newest DuckDB both publish, found with `npm view <package> versions`; it is pinned so
# that a new DuckDB release cannot change a build unannounced. Set
# TRIBUTARY_DUCKDB_VERSION=latest to pick the newest common release from the registry.
DUCKDB_VERSION="${TRIBUTARY_DUCKDB_VERSION:-1.4.4}"
DUCKDB_BINDINGS_VERSION="1.4.4-r.4"  # the bindings release of the pinned DUCKDB_VERSION

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DUCKDB_DIR="$ROOT/.deps/duckdb"
JOBS="${TRIBUTARY_JOBS:-$(nproc)}"

log() { printf 'setup: %s\n' "$*"; }
die() {
  printf 'setup: error: %s\n' "$*" >&2
  exit 1
}

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }

# Runs a command as root: directly when root, through sudo when it exists.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "'$*' needs root: run this script as root or install sudo"
  fi
}

# Prints the packages of PACKAGES that are neither installed nor provided by an installed
# package (nodejs from other sources provides npm, for example). One dpkg-query call.
missing_packages() {
  local have
  have="$(dpkg-query -W -f='${db:Status-Status} ${Package} ${Provides}\n' 2>/dev/null |
    awk '$1 == "installed" { gsub(/,/, " "); for (i = 2; i <= NF; i++) if ($i !~ /^\(|\)$/) print $i }' |
    sort -u)"
  local pkg
  for pkg in "${PACKAGES[@]}"; do
    grep -qxF "$pkg" <<<"$have" || printf '%s\n' "$pkg"
  done
}

# True when the apt package lists were refreshed less than a day ago.
apt_lists_fresh() {
  find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | grep -q .
}

install_packages() {
  local missing
  mapfile -t missing < <(missing_packages)
  if [ "${#missing[@]}" -eq 0 ]; then
    log "all ${#PACKAGES[@]} Debian packages are installed"
    return
  fi
  log "installing ${missing[*]}"
  local updated=0
  if ! apt_lists_fresh; then
    as_root apt-get update
    updated=1
  fi
  local install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends)
  if ! as_root "${install[@]}" "${missing[@]}"; then
    [ "$updated" -eq 0 ] || die "apt-get install failed"
    log "retrying after apt-get update"
    as_root apt-get update
    as_root "${install[@]}" "${missing[@]}"
  fi
}

# True when duckdb.h and libduckdb.so are installed outside this repository.
system_has_duckdb() {
  [ -f /usr/include/duckdb.h ] || [ -f /usr/local/include/duckdb.h ] || return 1
  { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep -q '/libduckdb\.so$' ||
    compgen -G '/usr/lib/*/libduckdb.so' >/dev/null || [ -f /usr/lib/libduckdb.so ] ||
    [ -f /usr/local/lib/libduckdb.so ]
}

duckdb_platform() {
  case "$(uname -m)" in
    x86_64) echo linux-x64 ;;
    aarch64 | arm64) echo linux-arm64 ;;
    *) die "no prebuilt DuckDB for $(uname -m); install duckdb.h and libduckdb.so yourself" ;;
  esac
}

# Sets DUCKDB_VERSION and DUCKDB_BINDINGS_VERSION from the registry: the DuckDB release
# WANTED (X.Y.Z, or "latest" for the newest one) published both as the duckdb package
# (X.Y.Z) and as the bindings package (X.Y.Z-tag.N, newest N; or plain X.Y.Z).
resolve_duckdb() {
  local wanted="$1" bindings_pkg="$2" pair
  pair="$(node -e '
    const [wanted, duckdb, bindings] = [process.argv[1], ...process.argv.slice(2).map(JSON.parse)];
    const core = (v) => v.split("-")[0].split(".").map(Number);
    const newer = (a, b) => { for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return b[i] - a[i]; return 0; };
    const rank = (v) => (v.includes("-") ? Number(v.split(".").pop()) || 0 : Infinity);
    const releases = duckdb.filter((v) => /^\d+\.\d+\.\d+$/.test(v) && (wanted === "latest" || v === wanted))
      .sort((a, b) => newer(core(a), core(b)));
    for (const v of releases) {
      const builds = bindings.filter((b) => b === v || b.startsWith(v + "-")).sort((a, b) => rank(b) - rank(a));
      if (builds.length > 0) { console.log(v + " " + builds[0]); process.exit(0); }
    }
    process.exit(1);
  ' "$wanted" "$(npm view duckdb versions --json --loglevel=error)" \
    "$(npm view "$bindings_pkg" versions --json --loglevel=error)")" ||
    die "DuckDB $wanted is not published as both duckdb and $bindings_pkg"
  DUCKDB_VERSION="${pair% *}"
  DUCKDB_BINDINGS_VERSION="${pair#* }"
}

# Extracts the one member of a tarball whose path ends in /NAME into DEST/NAME.
extract_member() {
  local tarball="$1" name="$2" dest="$3" member
  # The whole listing is read (no early exit) so that tar never dies of a closed pipe.
  member="$(tar tzf "$tarball" | awk -v n="/$name" \
    'found == "" && substr($0, length($0) - length(n) + 1) == n { found = $0 } END { print found }')"
  [ -n "$member" ] || die "$(basename "$tarball") has no $name"
  mkdir -p "$dest"
  tar xzf "$tarball" -O "$member" >"$dest/$name.tmp"
  mv "$dest/$name.tmp" "$dest/$name"
}

DUCKDB_WORK=""
cleanup() { [ -z "$DUCKDB_WORK" ] || rm -rf "$DUCKDB_WORK"; }
trap cleanup EXIT

install_duckdb() {
  if system_has_duckdb; then
    log "DuckDB: using the system's duckdb.h and libduckdb.so"
    return
  fi
  local bindings_pkg
  bindings_pkg="@duckdb/node-bindings-$(duckdb_platform)"
  if [ "$DUCKDB_VERSION" != "${DUCKDB_BINDINGS_VERSION%%-*}" ]; then
    command -v npm >/dev/null 2>&1 || die "npm is needed to look up DuckDB $DUCKDB_VERSION"
    resolve_duckdb "$DUCKDB_VERSION" "$bindings_pkg"
  fi
  if [ -f "$DUCKDB_DIR/VERSION" ] && [ "$(cat "$DUCKDB_DIR/VERSION")" = "$DUCKDB_VERSION" ] &&
    [ -f "$DUCKDB_DIR/lib/libduckdb.so" ] && [ -f "$DUCKDB_DIR/include/duckdb.h" ]; then
    log "DuckDB $DUCKDB_VERSION is in .deps/duckdb"
    return
  fi
  command -v npm >/dev/null 2>&1 || die "npm is needed to fetch DuckDB"
  log "DuckDB: fetching duckdb@$DUCKDB_VERSION and $bindings_pkg@$DUCKDB_BINDINGS_VERSION"
  mkdir -p "$DUCKDB_DIR"
  DUCKDB_WORK="$(mktemp -d "$DUCKDB_DIR/.download.XXXXXX")"
  # npm pack only downloads the published tarballs: nothing is installed, no script runs.
  # It prints the tarball names in the order of its arguments.
  local tarballs
  mapfile -t tarballs < <(cd "$DUCKDB_WORK" && npm pack --ignore-scripts --loglevel=error \
    "duckdb@$DUCKDB_VERSION" "$bindings_pkg@$DUCKDB_BINDINGS_VERSION" | grep '\.tgz$')
  [ "${#tarballs[@]}" -eq 2 ] || die "npm pack did not fetch both DuckDB packages"
  rm -f "$DUCKDB_DIR/VERSION"
  extract_member "$DUCKDB_WORK/${tarballs[0]}" duckdb.h "$DUCKDB_DIR/include"
  extract_member "$DUCKDB_WORK/${tarballs[1]}" libduckdb.so "$DUCKDB_DIR/lib"
  echo "$DUCKDB_VERSION" >"$DUCKDB_DIR/VERSION"
  cleanup
  DUCKDB_WORK=""
  log "DuckDB $DUCKDB_VERSION unpacked into .deps/duckdb"
}

# h3-js, the H3 reference library compiled to JavaScript, is what src/spatial/h3_reference_test.cc
# compares tributary's own H3 against, cell for cell. It is only a test oracle: nothing is
# built from it. Pinned for the same reason as DuckDB.
H3JS_VERSION="4.5.0"
H3JS_DIR="$ROOT/.deps/node"

install_h3js() {
  local have=""
  have="$(node -p 'require(process.argv[1]).version' \
    "$H3JS_DIR/node_modules/h3-js/package.json" 2>/dev/null || true)"
  if [ "$have" = "$H3JS_VERSION" ]; then
    log "h3-js $H3JS_VERSION is in .deps/node"
    return
  fi
  command -v npm >/dev/null 2>&1 || die "npm is needed to fetch h3-js"
  log "h3-js: installing h3-js@$H3JS_VERSION into .deps/node"
  mkdir -p "$H3JS_DIR"
  npm install --prefix "$H3JS_DIR" --ignore-scripts --no-audit --no-fund --loglevel=error \
    "h3-js@$H3JS_VERSION" >/dev/null
}

# The Meuse heavy-metal samples (155 topsoil samples, R's sp package) are the data of the
# published gstat example src/spatial/variogram_test.cc checks the semivariogram against.
# Debian ships them in r-cran-sp; only its data file is unpacked (R is not installed).
MEUSE_FILE="$ROOT/.deps/meuse/meuse.rda"

install_meuse() {
  if [ -s "$MEUSE_FILE" ]; then
    log "the Meuse data set is in .deps/meuse"
    return
  fi
  local work member=./usr/lib/R/site-library/sp/data/meuse.rda
  work="$(mktemp -d)"
  log "Meuse data set: fetching Debian's r-cran-sp"
  if ! (cd "$work" && apt-get download r-cran-sp >/dev/null 2>&1); then
    as_root apt-get update
    (cd "$work" && apt-get download r-cran-sp >/dev/null) || die "cannot download r-cran-sp"
  fi
  mkdir -p "$(dirname "$MEUSE_FILE")"
  dpkg-deb --fsys-tarfile "$work"/r-cran-sp_*.deb | tar -xO "$member" >"$MEUSE_FILE.tmp" ||
    die "r-cran-sp has no $member"
  mv "$MEUSE_FILE.tmp" "$MEUSE_FILE"
  rm -rf "$work"
}

# ccache's own default cache folder, made explicit so that every build shares it.
setup_ccache() {
  export CCACHE_DIR="${CCACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/ccache}"
  mkdir -p "$CCACHE_DIR"
  # Paths inside the tree are hashed relative to it, and the build folder is left out of
  # the hash (it is part of it by default with -g), so a fresh clone elsewhere (CI) hits
  # the cache that earlier builds filled.
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$ROOT}"
  export CCACHE_NOHASHDIR=1
  if ! grep -qs '^max_size' "$CCACHE_DIR/ccache.conf"; then
    ccache -M 5G >/dev/null
    log "ccache: $CCACHE_DIR, at most 5G"
  fi
}

# Builds the dashboard (web/ → web/dist) and installs playwright-core for the browser
# tests (tests/e2e/node_modules), from the committed lock files. Skipped when dist/ is
# newer than every source of the dashboard and the test packages are present.
build_web() {
  local root web
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  web="$root/web"
  if [ ! -d "$root/tests/e2e/node_modules/playwright-core" ]; then
    (cd "$root/tests/e2e" && npm ci --no-audit --no-fund --loglevel=error)
  fi
  if [ -f "$web/dist/index.html" ] &&
    [ -z "$(find "$web/index.html" "$web/src" "$web/package-lock.json" "$web/vite.config.js" \
      -newer "$web/dist/index.html" -print -quit)" ]; then
    return
  fi
  log "building the dashboard in web/"
  (cd "$web" && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)
}

install_deps() {
  install_packages
  install_duckdb
  install_h3js
  install_meuse
  setup_ccache
  build_web
}

# Configures PRESET and builds it (or the given targets).
build() {
  local preset="$1"
  shift
  cmake --preset "$preset"
  cmake --build --preset "$preset" -j "$JOBS" "$@"
}

main() {
  local mode="${1:-}"
  [ $# -eq 0 ] || shift
  case "$mode" in
    --deps-only)
      install_deps
      ;;
    "")
      install_deps
      cd "$ROOT"
      build release
      log "built build/release/tributary"
      ;;
    --test)
      install_deps
      cd "$ROOT"
      build ci
      ctest --preset ci --output-on-failure -j 2
      ;;
    --run)
      install_deps
      cd "$ROOT"
      build release --target tributary
      exec build/release/tributary run "$@"
      ;;
    --peers)
      PACKAGES+=("${PEER_PACKAGES[@]}")
      install_deps
      cd "$ROOT"
      build release --target tributary peer_spatial_bench
      exec /usr/bin/python3 bench/peers/run_peers.py "$@"
      ;;
    -h | --help)
      usage
      ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"

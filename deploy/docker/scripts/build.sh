#!/bin/sh
# The build stage of deploy/docker's images, also runnable natively:
#
#   build.sh [PREFIX [BUILD_DIR]]                 install packages, configure (Release),
#                                                 build the three programs, install into PREFIX
#   build.sh --install-only [PREFIX [BUILD_DIR]]  only `cmake --install` an existing build
#
# PREFIX defaults to $MAILHOOK_PREFIX, else /opt/mailhook; BUILD_DIR to
# $MAILHOOK_BUILD_DIR, else build-release/ in the source tree. The install
# puts mailhook-front, mailhook-policyd and mailhook-probe in PREFIX/bin,
# the Lua policy and examples in PREFIX/share/mailhook/lua, and the
# container scripts (start-*.sh, healthcheck-*.sh) in PREFIX/bin beside
# the programs. It never touches anything outside BUILD_DIR and PREFIX
# (apart from the package install of the full mode).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)

install_only=no
if [ "${1:-}" = "--install-only" ]; then
  install_only=yes
  shift
fi
case "${1:-}" in
  -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  -*) echo "build.sh: unknown option $1" >&2; exit 2 ;;
esac
prefix=${1:-${MAILHOOK_PREFIX:-/opt/mailhook}}
build=${2:-${MAILHOOK_BUILD_DIR:-$src/build-release}}

if [ "$install_only" = no ]; then
  "$src/deploy/debian/install.sh" build
  # The programs only: no tests, so no test-only package is needed.
  cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMAILHOOK_TESTS=OFF
  cmake --build "$build" --target mailhook-front mailhook-policyd mailhook-probe
elif [ ! -f "$build/CMakeCache.txt" ]; then
  echo "build.sh: $build is not a configured build directory" >&2
  exit 1
fi

echo "build.sh: installing $build into $prefix" >&2
cmake --install "$build" --prefix "$prefix"
# The entrypoints and healthchecks sit beside the programs they run.
for s in start-front.sh start-policyd.sh healthcheck-front.sh healthcheck-policyd.sh; do
  install -m 0755 "$here/$s" "$prefix/bin/$s"
done
for p in mailhook-front mailhook-policyd mailhook-probe; do
  [ -x "$prefix/bin/$p" ] || { echo "build.sh: $prefix/bin/$p missing after install" >&2; exit 1; }
done

#!/usr/bin/env bash
# make install PREFIX=... : installs libchronica (shared and static), the C
# and C++ headers, a pkg-config file (chronica.pc) and a CMake package
# (find_package(chronica) -> chronica::chronica) under PREFIX.
# Set CHRONICA_SKIP_BUILD=1 to install what target/release already holds.
# The static link's native libraries (chronica.pc's Libs.private, the CMake
# package's chronica::chronica_static) are rustc's report for the build
# installed (lib-c.sh, build_release).
set -euo pipefail
source "$(dirname "$0")/lib-c.sh"

PREFIX=${1:-}
PREFIX=${PREFIX:-/usr/local}
if [[ ${CHRONICA_SKIP_BUILD:-0} == 1 ]]; then load_native_static_libs; else build_release; fi

VERSION=$(workspace_version)
[[ -n $VERSION ]] || die "no version in Cargo.toml"
IFS=. read -r MAJOR MINOR _ <<<"$VERSION"
if [[ $MAJOR == 0 ]]; then SOVERSION="0.$MINOR"; else SOVERSION="$MAJOR"; fi

step "installing chronica $VERSION into $PREFIX"
install -d "$PREFIX/lib/pkgconfig" "$PREFIX/lib/cmake/chronica" "$PREFIX/include"
install -m 644 "$ROOT/include/chronica.h" "$ROOT/include/chronica.hpp" "$PREFIX/include/"
install -m 755 "$LIBDIR/libchronica.so" "$PREFIX/lib/libchronica.so.$VERSION"
ln -sfn "libchronica.so.$VERSION" "$PREFIX/lib/libchronica.so.$SOVERSION"
ln -sfn "libchronica.so.$SOVERSION" "$PREFIX/lib/libchronica.so"
install -m 644 "$LIBDIR/libchronica.a" "$PREFIX/lib/libchronica.a"

# The same libraries as a CMake list (-lgcc_s;-lutil;...).
NATIVE_STATIC_LIBS_CMAKE=$(printf '%s' "$NATIVE_STATIC_LIBS" | tr -s ' ' ';')
fill() {
    sed -e "s|@VERSION@|$VERSION|g" -e "s|@SOVERSION@|$SOVERSION|g" \
        -e "s|@NATIVE_STATIC_LIBS@|$NATIVE_STATIC_LIBS|g" \
        -e "s|@NATIVE_STATIC_LIBS_CMAKE@|$NATIVE_STATIC_LIBS_CMAKE|g" "$1" >"$2"
}
fill "$ROOT/cmake/chronica.pc.in" "$PREFIX/lib/pkgconfig/chronica.pc"
fill "$ROOT/cmake/chronicaConfig.cmake.in" "$PREFIX/lib/cmake/chronica/chronicaConfig.cmake"
fill "$ROOT/cmake/chronicaConfigVersion.cmake.in" "$PREFIX/lib/cmake/chronica/chronicaConfigVersion.cmake"
step "installed: $PREFIX/lib/libchronica.{so,a}, $PREFIX/include/chronica.h{,pp}, chronica.pc, cmake/chronica"

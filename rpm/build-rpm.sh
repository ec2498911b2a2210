#!/usr/bin/env bash
# Builds fedmsg-relay's source and binary RPMs from the working tree (make rpm).
#
#   rpm/build-rpm.sh [rpmbuild options]     e.g. --without check
#
# Results: build/SRPMS/*.src.rpm and build/RPMS/<arch>/*.rpm ($BUILD_DIR
# instead of build/ when set, as the tests do).
# Source0 is the tree's tracked and new (not ignored) files; Source1 is
# `go mod vendor` of it, so rpmbuild itself needs no network (Go modules come
# from the module cache or GOPROXY here). On Debian, whose rpm lacks Fedora's
# macros, the test-only rpm/debian-test/macros stand in for them.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

name=fedmsg-relay
spec=$name.spec
version=$(awk '$1 == "Version:" { print $2; exit }' "$spec")
build=${BUILD_DIR:-$repo/build}
top=$build/rpmbuild
rm -rf "$top" && mkdir -p "$top/SOURCES" "$build/SRPMS" "$build/RPMS"
stage=$(mktemp -d)
trap 'chmod -R u+w "$stage"; rm -rf "$stage"' EXIT

# Source0: the tree as it is now, under name-version/.
mkdir "$stage/$name-$version"
git ls-files -z --cached --others --exclude-standard |
	while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
	tar --null -T - -cf - | tar -C "$stage/$name-$version" -xf -
tar -C "$stage" --owner=0 --group=0 --numeric-owner -czf "$top/SOURCES/$name-$version.tar.gz" "$name-$version"

# Source1: vendored modules (vendor/ at the top of the tarball).
(cd "$stage/$name-$version" && GOFLAGS=-mod=mod go mod vendor)
tar -C "$stage/$name-$version" --owner=0 --group=0 --numeric-owner -czf "$top/SOURCES/$name-$version-vendor.tar.gz" vendor
cp -p rpm/fedmsg-relay.sysusers "$top/SOURCES/"

args=(--define "_topdir $top" --define "_srcrpmdir $build/SRPMS" --define "_rpmdir $build/RPMS")
if [ -z "$(rpm --eval '%{?_unitdir}')" ]; then
	# Debian: Fedora's macros from the test-only file, and no rpmdb to check
	# BuildRequires against.
	args+=(--load "$repo/rpm/debian-test/macros" --define "_fedmsg_selinux_shim $repo/rpm/debian-test" --nodeps)
fi
rpmbuild -ba "${args[@]}" "$@" "$spec"
find "$build/SRPMS" "$build/RPMS" -name "$name-*$version-*.rpm" -newer "$top/SOURCES/$name-$version.tar.gz"

#!/usr/bin/env bash
# Builds the RPM dkms-exporter-VERSION-1.noarch.rpm from this checkout with rpmbuild (Debian's
# rpm package has it):   deploy/rpm/build.sh [OUTDIR]     (default: dist/ in the checkout)
# Stages the tracked files the package needs as Source0 (a tarball) in a temporary _topdir.
# The last line printed is RPM=<path of the .rpm>.
set -euo pipefail
export LC_ALL=C.UTF-8
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=$(mkdir -p "${1:-$REPO/dist}" && cd "${1:-$REPO/dist}" && pwd)
die() { printf 'deploy/rpm/build.sh: %s\n' "$*" >&2; exit 1; }
command -v rpmbuild >/dev/null || die "rpmbuild is missing (apt-get install rpm)"
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$REPO/exporter/__init__.py")
spec_version=$(sed -n 's/^Version: *//p' "$HERE/dkms-exporter.spec")
[[ $version == "$spec_version" ]] || die "dkms-exporter.spec says $spec_version, exporter/__init__.py says $version"

TOP=$(mktemp -d "${TMPDIR:-/tmp}/dkms-exporter-rpm.XXXXXX")
trap 'rm -rf "$TOP"' EXIT
mkdir -p "$TOP"/{SOURCES,SPECS,BUILD,RPMS,SRPMS} "$TOP/src/dkms-exporter-$version"
(cd "$REPO" && git ls-files -z -- pyproject.toml README.md exporter deploy/systemd deploy/hooks deploy/dnf \
   deploy/rpm/LICENSE.notice docs/deploy.md docs/runbooks.md docs/metrics.md |
   xargs -0 cp --parents -t "$TOP/src/dkms-exporter-$version")
tar -C "$TOP/src" -czf "$TOP/SOURCES/dkms-exporter-$version.tar.gz" "dkms-exporter-$version"
cp "$HERE/dkms-exporter.spec" "$TOP/SPECS/"
# BuildRequires are Debian packages here, which Debian's (empty) rpm database does not know: the
# script checks them itself and rpmbuild gets --nodeps.  Debian's python3 with python3-build,
# whatever the caller's PATH says (a venv has no build module).
/usr/bin/python3 -c 'import build, setuptools' 2>/dev/null ||
  die "Debian's python3-build and python3-setuptools are missing (apt-get install python3-build python3-setuptools)"
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$TOP" LC_ALL=C.UTF-8 \
  rpmbuild --nodeps --define "_topdir $TOP" -ba "$TOP/SPECS/dkms-exporter.spec" >"$TOP/build.log" 2>&1 ||
  { tail -n 40 "$TOP/build.log" >&2; die "rpmbuild failed (above: the end of its log)"; }
cp "$TOP/build.log" "$OUT/dkms-exporter-$version.rpmbuild.log"
find "$TOP/RPMS" "$TOP/SRPMS" -name '*.rpm' -exec cp -t "$OUT" {} +
echo "RPM=$(ls "$OUT"/dkms-exporter-"$version"-1*.noarch.rpm)"

#!/usr/bin/env bash
# Builds the Debian package prometheus-dkms-exporter from this checkout:
#   deploy/debian/build.sh [OUTDIR]      (default OUTDIR: dist/ in the checkout)
# It stages a source tree (the tracked files the package needs, as they are in the work tree,
# with deploy/debian/ as debian/) in a temporary directory and runs dpkg-buildpackage there, so
# the repository needs no top-level debian/ and the build leaves nothing behind in it.
# Needs: dpkg-dev, debhelper, dh-python, pybuild-plugin-pyproject, python3-setuptools (see
# .ci/apt-packages).  Output: the .deb, the native source (.dsc, .tar.xz), .buildinfo, .changes;
# the last line printed is DEB=<path of the .deb>.
set -euo pipefail
export LC_ALL=C.UTF-8
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=$(mkdir -p "${1:-$REPO/dist}" && cd "${1:-$REPO/dist}" && pwd)
die() { printf 'deploy/debian/build.sh: %s\n' "$*" >&2; exit 1; }

for tool in dpkg-buildpackage dh git python3; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install dpkg-dev debhelper dh-python pybuild-plugin-pyproject git)"
done

# One version: the changelog's must be the code's (exporter/__init__.py).
code_version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$REPO/exporter/__init__.py")
deb_version=$(dpkg-parsechangelog -l "$HERE/changelog" -S Version)
[[ $deb_version == "$code_version" || $deb_version == "$code_version"[+~]* ]] ||
  die "deploy/debian/changelog says $deb_version, exporter/__init__.py says $code_version"

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/dkms-exporter-deb.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
SRC=$STAGE/prometheus-dkms-exporter-$deb_version
mkdir -p "$SRC"
# What the package is built from: the Python project and the deploy files it installs.
(cd "$REPO" && git ls-files -z -- pyproject.toml README.md exporter deploy/systemd deploy/hooks deploy/apt \
   docs/deploy.md docs/runbooks.md docs/metrics.md | xargs -0 cp --parents -t "$SRC")
cp -a "$HERE" "$SRC/debian"
rm -f "$SRC/debian/build.sh"
# Reproducible: every staged file dated like the changelog entry.
SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l "$HERE/changelog" -S Timestamp)
export SOURCE_DATE_EPOCH
find "$SRC" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# Debian's own python3 and tools, whatever the caller's PATH (a pyenv or venv python3 has no
# pybuild modules) and environment say.
(cd "$SRC" && env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$STAGE" LC_ALL=C.UTF-8 \
   SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" dpkg-buildpackage -us -uc --build=source,all) >"$STAGE/build.log" 2>&1 ||
  { tail -n 40 "$STAGE/build.log" >&2; die "dpkg-buildpackage failed (above: the end of its log)"; }
cp "$STAGE/build.log" "$OUT/prometheus-dkms-exporter_${deb_version}.build.log"
find "$STAGE" -maxdepth 1 -type f -name "prometheus-dkms-exporter_${deb_version}*" -exec cp -t "$OUT" {} +
echo "DEB=$OUT/prometheus-dkms-exporter_${deb_version}_all.deb"

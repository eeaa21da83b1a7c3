# Sourced by scripts/test and scripts/serve: a virtualenv in .venv with the project installed.
# On a fresh Debian 12, python3 has no venv module until python3-venv is installed.
ensure_venv() {
  local extras=$1
  venv=${DKMS_EXPORTER_VENV:-.venv}
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    if [[ $(id -u) -ne 0 ]]; then echo "!! python3-venv is missing: apt-get install python3-venv (as root)" >&2; exit 1; fi
    echo ">> installing python3-venv"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
  if [[ ! -x "$venv/bin/python" ]]; then
    echo ">> creating virtualenv $venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}"
}

# Sourced by scripts/start and scripts/test, from the repository's root: the project's
# virtual environment in .venv, made with ${PYTHON:-python3} (3.11 or newer), with jobrt
# installed in it (editable). It is reused while pyproject.toml is unchanged: .venv/.jobrt-installed
# holds pyproject.toml's hash and the extras installed. This works with a system python3 that
# refuses pip installs (PEP 668: Debian 12, Ubuntu 24.04) and needs no root; pip's own
# settings (PIP_INDEX_URL, PIP_FIND_LINKS, pip.conf, ...) apply inside the venv as anywhere.

VENV=.venv
STAMP=$VENV/.jobrt-installed

say() { echo "scripts/${0##*/}: $*" >&2; }

# Install Debian packages: as root, or through sudo when it asks no password. Fails otherwise.
apt_install() {
  local sudo=
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null || return 1
    sudo="sudo"
  fi
  command -v apt-get >/dev/null 2>&1 || return 1
  if [ -z "${APT_UPDATED:-}" ]; then
    $sudo apt-get update -qq || return 1
    APT_UPDATED=1
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Whether the extras in $1 (comma-separated) include every one in $2.
covers() {
  local extra
  for extra in ${2//,/ }; do
    case ",$1," in *",$extra,"*) ;; *) return 1 ;; esac
  done
}

# The interpreter to make .venv with, checked: exits with one line when it will not do.
base_python() {
  local python=${PYTHON:-python3}
  if ! command -v "$python" >/dev/null 2>&1; then
    say "jobrt needs Python 3.11 or newer, and there is no $python (install python3, e.g. apt-get install python3, or set PYTHON to one)"
    exit 1
  fi
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    local version
    version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo "unknown")
    say "jobrt needs Python 3.11 or newer, and $python is $version (install python3.11 or newer and run again with PYTHON=python3.11)"
    exit 1
  fi
  echo "$python"
}

# make_venv PYTHON: a fresh .venv. Debian and Ubuntu ship venv's pip bootstrap (ensurepip)
# apart, in python3-venv: as root it is installed from apt, otherwise one line says so.
make_venv() {
  local python=$1 version package
  rm -rf "$VENV"
  if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    package=python3-venv  # for Debian's own python3; another python3.X needs python3.X-venv
    if [ "$version" != "$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" ]; then
      package=python$version-venv
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      say "installing $package from apt ($python has no ensurepip, which $python -m venv needs)"
      apt_install "$package" || true
    fi
    if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
      say "cannot create $VENV: $python has no venv/ensurepip module (on Debian or Ubuntu: apt-get install $package)"
      exit 1
    fi
  fi
  "$python" -m venv "$VENV"
}

# ensure_venv EXTRAS: .venv with jobrt installed with EXTRAS (e.g. "test,postgres", or "").
ensure_venv() {
  local extras=$1 python hash have_hash have_extras spec=.
  hash=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && read -r have_hash have_extras <"$STAMP" \
      && [ "$have_hash" = "$hash" ] && covers "${have_extras:-}" "$extras" \
      && "$VENV/bin/python" -c '' 2>/dev/null; then
    return
  fi
  if ! [ -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    python=$(base_python) || exit 1
    say "creating $VENV with $python ($("$python" -c 'import sys; print(sys.version.split()[0])'))"
    make_venv "$python"
  fi
  [ -n "$extras" ] && spec=".[$extras]"
  say "installing jobrt into $VENV (pip install -e '$spec'; again only when pyproject.toml changes)"
  rm -f "$STAMP"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec"
  echo "$hash $extras" >"$STAMP"
}

# with_venv EXTRAS: ensure_venv under a lock (two scripts starting at once), then put
# .venv/bin first on PATH, as `source .venv/bin/activate` would.
with_venv() {
  if command -v flock >/dev/null 2>&1; then
    exec 9<pyproject.toml
    flock 9
    ensure_venv "$1"
    exec 9<&-
  else
    ensure_venv "$1"
  fi
  export VIRTUAL_ENV=$PWD/$VENV
  export PATH=$VIRTUAL_ENV/bin:$PATH
  unset PYTHONHOME
}

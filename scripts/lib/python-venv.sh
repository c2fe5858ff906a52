# Sourced by the scripts that install a pinned Python stack into a virtual
# environment cached outside the clone (install-python-stack,
# install-vllm-protocol):
#
#   python_venv PREFIX REQUIREMENTS CHECK [PIP_ARGS...] -- "$@"
#
# installs REQUIREMENTS (pip install PIP_ARGS -r REQUIREMENTS) into
# $SELFPLAY_CACHE/PREFIX-<hash> (SELFPLAY_CACHE defaults to
# /var/cache/selfplay), the hash covering the requirements file and the
# Python interpreter's version ($SELFPLAY_PYTHON, default python3), so a
# changed pin or interpreter gets a new environment and an unchanged one is
# reused; then runs the Python code CHECK in it. The script's own arguments
# follow --: none installs (nothing to do when installed), --print-path
# prints the environment's folder. An environment is complete once its
# .installed file exists; an interrupted install is removed and done again.
# One installer per environment at a time: a second one waits, then finds
# it installed.
python_venv() {
  local prefix=$1 requirements=$2 check=$3
  shift 3
  local pip_args=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do
    pip_args+=("$1")
    shift
  done
  shift
  local name python cache key venv start
  name=$(basename "$0")
  python=${SELFPLAY_PYTHON:-python3}
  cache=${SELFPLAY_CACHE:-/var/cache/selfplay}
  if ! command -v "$python" >/dev/null; then
    echo "$name: $python not found; install Python 3.11 (apt-get install -y python3 python3-venv) or set SELFPLAY_PYTHON" >&2
    exit 1
  fi
  key=$({ cat "$requirements"; "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16)
  venv=$cache/$prefix-$key

  if [ "${1:-}" = "--print-path" ] && [ $# -eq 1 ]; then
    echo "$venv"
    return 0
  fi
  if [ $# -ne 0 ]; then
    echo "usage: $0 [--print-path]" >&2
    exit 2
  fi
  if [ -f "$venv/.installed" ]; then
    echo "$name: $venv is installed"
    return 0
  fi

  mkdir -p "$cache"
  exec 9>"$venv.lock"
  flock 9
  if [ -f "$venv/.installed" ]; then
    echo "$name: $venv is installed"
    return 0
  fi
  rm -rf "$venv"
  start=$(date +%s)
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --no-input --no-cache-dir --disable-pip-version-check \
    --progress-bar off "${pip_args[@]}" -r "$requirements"
  "$venv/bin/python" -c "$check"
  cp "$requirements" "$venv/.installed"
  echo "$name: installed $venv in $(($(date +%s) - start))s"
}

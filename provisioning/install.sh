#!/usr/bin/env bash
# Install the kiosk on a Raspberry Pi (Raspberry Pi OS Bookworm) from a checkout of this
# repository, then provision it. Run as root:
#
#   sudo provisioning/install.sh --bundle kiosk-bundle.toml   # see provisioning/bundle.toml.example
#   sudo provisioning/install.sh                              # on a terminal: kiosk provision asks
#   sudo provisioning/install.sh --image                      # a golden image: no provisioning
#
# This script does only what must come before the kiosk's own code can run: the system
# packages (apt), uv (a pinned version, its wheels' hashes checked), the code in /opt/kiosk and
# its venv (uv sync --locked: every package checked against uv.lock's hashes). It then execs
# `kiosk provision` with its arguments (--bundle, --dry-run, --skip-hardware, ...), which does
# everything else: the service user, config, secrets, device identity, udev rules, units.
#
# --image stops before provisioning and enables kiosk-firstboot.service instead: each kiosk
# made from the image provisions itself at first boot from the bundle a technician puts on its
# boot partition as kiosk-bundle.toml.
#
# Idempotent: running it again upgrades the code and keeps config, secrets, identity, journal.
# Nothing fetched from the internet is run or installed without a pinned checksum.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (sudo $0 $*)" >&2
  exit 2
fi
src=$(cd "$(dirname "$0")/.." && pwd)
dest=/opt/kiosk
image=0
args=()
for arg in "$@"; do
  if [ "$arg" = --image ]; then image=1; else args+=("$arg"); fi
done

echo "== system packages (picamera2 and libcamera come from Raspberry Pi OS, not from PyPI)"
apt-get update
apt-get install -y --no-install-recommends python3 python3-venv python3-picamera2 \
  python3-lgpio libzbar0 rsync

# uv from PyPI into its own venv, pinned with the sha256 of each platform's wheel
# (pip --require-hashes refuses any other file). To upgrade: the version and the hashes of
# its manylinux wheels for aarch64, armv7l and x86_64 (PyPI lists them), together.
uv_version=0.13.9
echo "== uv $uv_version"
tools=/opt/kiosk-uv
uv=$tools/bin/uv
if [ ! -x "$uv" ] || [ "$("$uv" --version | cut -d' ' -f2)" != "$uv_version" ]; then
  rm -rf "$tools"
  python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --require-hashes -r /dev/stdin <<REQUIREMENTS
uv==$uv_version \
    --hash=sha256:5435c5ce14a56431208ca0996416d310f1598e8c2c8ba707688985a16bb82dbe \
    --hash=sha256:16963d19594e18d746a70c7fce82237bde4f2cac4cfcf0ca2b84796fe9d0c6e9 \
    --hash=sha256:d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19
REQUIREMENTS
fi
"$uv" --version

echo "== code in $dest"
mkdir -p "$dest"
rsync -a --delete --exclude .venv --exclude .git "$src/" "$dest/"
cd "$dest"
export UV_PYTHON_DOWNLOADS=never  # the system's Python only: uv downloads no interpreter
# The venv must see the system's picamera2: system Python, system site packages.
[ -d .venv ] || "$uv" venv --python /usr/bin/python3 --system-site-packages .venv
"$uv" sync --locked --no-dev --extra pi
.venv/bin/python -c "import picamera2" 2>/dev/null && echo "picamera2: visible" \
  || echo "picamera2: NOT visible (camera reader unavailable; replay and scanner still work)"

if [ "$image" = 1 ]; then
  echo "== golden image: kiosk-firstboot.service provisions each kiosk from its bundle"
  install -m 0644 systemd/kiosk-firstboot.service /etc/systemd/system/kiosk-firstboot.service
  systemctl daemon-reload
  systemctl enable kiosk-firstboot.service
  echo "   put a kiosk's bundle on its boot partition as kiosk-bundle.toml, then boot it"
  exit 0
fi

echo "== kiosk provision ${args[*]}"
exec "$dest/.venv/bin/kiosk" provision "${args[@]}"

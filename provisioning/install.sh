#!/usr/bin/env bash
# Provision a Raspberry Pi (Raspberry Pi OS Bookworm, 64-bit) as a kiosk. Run as root from a
# checkout of this repository:  sudo provisioning/install.sh
# Idempotent: running it again upgrades the code and keeps config, secrets and journal.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
dest=/opt/kiosk

echo "== system packages (picamera2 and libcamera come from Raspberry Pi OS, not from PyPI)"
apt-get update
apt-get install -y --no-install-recommends python3 python3-venv python3-picamera2 \
  python3-lgpio libzbar0 git curl

echo "== the kiosk user"
id kiosk >/dev/null 2>&1 || useradd --system --home /var/lib/kiosk --shell /usr/sbin/nologin kiosk
for g in dialout gpio video; do getent group "$g" >/dev/null && usermod -aG "$g" kiosk; done

echo "== uv"
command -v uv >/dev/null || curl -LsSf https://astral.sh/uv/install.sh | env UV_INSTALL_DIR=/usr/local/bin sh

echo "== code in $dest"
mkdir -p "$dest"
rsync -a --delete --exclude .venv --exclude .git "$src/" "$dest/"
cd "$dest"
# The venv must see the system's picamera2: system Python, system site packages.
[ -d .venv ] || uv venv --python /usr/bin/python3 --system-site-packages .venv
uv sync --locked --no-dev --extra pi
.venv/bin/python -c "import picamera2" 2>/dev/null && echo "picamera2: visible" \
  || echo "picamera2: NOT visible (camera reader unavailable; replay and scanner still work)"

echo "== config and secrets"
install -d -m 0750 -o root -g kiosk /etc/kiosk
[ -f /etc/kiosk/kiosk.toml ] || install -m 0640 -o root -g kiosk provisioning/kiosk.toml.example /etc/kiosk/kiosk.toml
if [ ! -f /etc/kiosk/secrets.toml ]; then
  umask 077
  printf 'journal_key = "%s"\n' "$(python3 -c 'import secrets; print(secrets.token_hex(32))')" > /etc/kiosk/secrets.toml
  chown kiosk:kiosk /etc/kiosk/secrets.toml && chmod 600 /etc/kiosk/secrets.toml
  echo "   wrote /etc/kiosk/secrets.toml: add the [payby] private_key (see provisioning/secrets.toml.example)"
fi
install -d -m 0750 -o kiosk -g kiosk /var/lib/kiosk

echo "== udev names and the service"
install -m 0644 provisioning/99-kiosk.rules /etc/udev/rules.d/99-kiosk.rules
udevadm control --reload && udevadm trigger
install -m 0644 systemd/kiosk.service /etc/systemd/system/kiosk.service
systemctl daemon-reload
systemctl enable kiosk.service
echo "== check the config, then: systemctl start kiosk"
sudo -u kiosk KIOSK_CONFIG=/etc/kiosk/kiosk.toml .venv/bin/kiosk config check || true

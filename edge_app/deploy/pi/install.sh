#!/usr/bin/env bash
# Install the cxr-edge kiosk on Raspberry Pi OS 64-bit (Bookworm): a venv with the `pi` extra
# (Kivy, ai-edge-litert, pydicom; no torch), a model bundle, and a systemd unit that starts the
# app fullscreen at boot. Decision support only, not a diagnosis. See docs/deploy-pi.md.
#
#   sudo ./install.sh --source /path/to/cxr-edge --bundle /path/to/bundle [--watch /media/xrays]
#
# Options:
#   --source SPEC     what pip installs with the [pi] extra: a checkout folder or a built wheel
#                     (required: cxr-edge is not published on a package index)
#   --bundle DIR      model bundle folder to install (copied to DATA_DIR/bundles/<name>)
#   --watch DIR       watch folder for new images (e.g. a USB stick mount point; spaces allowed)
#   --idle-reset S    seconds without a touch before the kiosk returns to its start screen (120)
#   --user NAME       account that runs the app (default: the user who called sudo, else pi)
#   --mode MODE       kms (Raspberry Pi OS Lite, no desktop; default when the boot target is not
#                     graphical) or desktop (a systemd user unit in the desktop session)
#   --prefix DIR      install folder (default /opt/cxr-edge)
#   --data-dir DIR    settings, reports and bundles (default /var/lib/cxr-edge)
#   --root DIR        write every file below DIR and skip apt, pip, useradd and systemctl
#                     (a dry run that shows what would be installed; used by the tests)
set -euo pipefail

SOURCE=""
BUNDLE=""
WATCH=""
IDLE_RESET="120"
RUN_USER="${SUDO_USER:-pi}"
MODE=""
PREFIX="/opt/cxr-edge"
DATA_DIR="/var/lib/cxr-edge"
ROOT=""
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "==> $*"; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --source) SOURCE="$2"; shift 2 ;;
        --bundle) BUNDLE="$2"; shift 2 ;;
        --watch) WATCH="$2"; shift 2 ;;
        --idle-reset) IDLE_RESET="$2"; shift 2 ;;
        --user) RUN_USER="$2"; shift 2 ;;
        --mode) MODE="$2"; shift 2 ;;
        --prefix) PREFIX="$2"; shift 2 ;;
        --data-dir) DATA_DIR="$2"; shift 2 ;;
        --root) ROOT="$2"; shift 2 ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done

if [[ -z "$ROOT" && -z "$SOURCE" ]]; then
    die "--source is required: a cxr-edge checkout folder or a wheel built with 'python -m build' \
(cxr-edge is not published on a package index)"
fi
if [[ -n "$SOURCE" && ! -e "$SOURCE" ]]; then
    die "--source '$SOURCE' does not exist; expected a cxr-edge checkout folder or a .whl file"
fi
[[ "$IDLE_RESET" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--idle-reset '$IDLE_RESET' is not a number of seconds"
if [[ -n "$BUNDLE" && ! -f "$BUNDLE/manifest.json" ]]; then
    die "--bundle '$BUNDLE' has no manifest.json; expected a bundle folder written by cxr-export"
fi
if [[ -z "$MODE" ]]; then
    if [[ -z "$ROOT" ]] && command -v systemctl >/dev/null && [[ "$(systemctl get-default)" == graphical.target ]]; then
        MODE="desktop"
    else
        MODE="kms"
    fi
fi
[[ "$MODE" == kms || "$MODE" == desktop ]] || die "--mode '$MODE': expected kms or desktop"

if [[ -z "$ROOT" ]]; then
    [[ $EUID -eq 0 ]] || die "run as root (sudo ./install.sh ...), or use --root DIR for a dry run"
    [[ "$(uname -m)" == aarch64 ]] || die "this is $(uname -m); expected aarch64: Raspberry Pi OS must be \
the 64-bit edition (the inference runtimes have no 32-bit ARM wheels)"
    if ! grep -q 'VERSION_CODENAME=bookworm' /etc/os-release; then
        echo "install.sh: warning: not Raspberry Pi OS Bookworm; continuing" >&2
    fi
    id "$RUN_USER" >/dev/null 2>&1 || die "user '$RUN_USER' does not exist (--user NAME)"
fi

# The watch folder travels in a variable of its own (the app reads CXR_EDGE_WATCH): systemd splits
# $CXR_EDGE_APP_ARGS at whitespace, which would cut a folder name with spaces in two.
APP_ARGS="--idle-reset $IDLE_RESET"

# A value for a systemd EnvironmentFile: double-quoted, with \ " $ and ` escaped.
env_quote() {
    local value="$1"
    value="${value//\\/\\\\}"
    value="${value//\"/\\\"}"
    value="${value//\$/\\\$}"
    value="${value//\`/\\\`}"
    printf '"%s"' "$value"
}

if [[ "$MODE" == kms ]]; then
    ENV_FILE="/etc/default/cxr-edge-kiosk"
    UNIT_SRC="$HERE/cxr-edge-kiosk.service"
    UNIT_DST="/etc/systemd/system/cxr-edge-kiosk.service"
else
    USER_HOME="$(getent passwd "$RUN_USER" | cut -d: -f6 || true)"
    USER_HOME="${USER_HOME:-/home/$RUN_USER}"
    ENV_FILE="$USER_HOME/.config/cxr-edge/kiosk.env"
    UNIT_SRC="$HERE/cxr-edge-kiosk-desktop.service"
    UNIT_DST="$USER_HOME/.config/systemd/user/cxr-edge-kiosk.service"
fi

if [[ -z "$ROOT" ]]; then
    say "system packages (OpenGL ES / EGL / DRM libraries for SDL, mtdev for touch screens)"
    apt-get update
    apt-get install -y --no-install-recommends python3-venv python3-dev libgl1 libegl1 libgles2 \
        libgbm1 libdrm2 libmtdev1 libinput10
    say "virtual environment in $PREFIX/venv with cxr-edge[pi]"
    python3 -m venv "$PREFIX/venv"
    "$PREFIX/venv/bin/pip" install --upgrade pip
    if [[ -d "$SOURCE" ]]; then
        "$PREFIX/venv/bin/pip" install "$(cd "$SOURCE" && pwd)[pi]"
    else
        "$PREFIX/venv/bin/pip" install "${SOURCE}[pi]"
    fi
fi

mkdir -p "$ROOT$DATA_DIR/bundles" "$ROOT$DATA_DIR/reports" "$ROOT$(dirname "$ENV_FILE")" \
    "$ROOT$(dirname "$UNIT_DST")" "$ROOT$PREFIX/docs"
if [[ -n "$BUNDLE" ]]; then
    name="$(basename "$(cd "$BUNDLE" && pwd)")"
    say "model bundle $name -> $DATA_DIR/bundles/$name"
    rm -rf "$ROOT$DATA_DIR/bundles/.$name.new"
    cp -r "$BUNDLE" "$ROOT$DATA_DIR/bundles/.$name.new"
    rm -rf "$ROOT$DATA_DIR/bundles/$name"
    mv "$ROOT$DATA_DIR/bundles/.$name.new" "$ROOT$DATA_DIR/bundles/$name"
fi
if [[ -f "$HERE/../../../docs/deploy-pi.md" ]]; then
    cp "$HERE/../../../docs/deploy-pi.md" "$ROOT$PREFIX/docs/"
fi

say "settings -> $ENV_FILE"
{
    echo "# cxr-edge kiosk settings (written by install.sh; read by the systemd unit)."
    echo "CXR_EDGE_DATA_DIR=$DATA_DIR"
    echo "# A bundle folder; empty = the first one under \$CXR_EDGE_DATA_DIR/bundles."
    echo "CXR_EDGE_BUNDLE="
    echo "# The folder watched for new images; empty = none."
    echo "CXR_EDGE_WATCH=$(env_quote "$WATCH")"
    echo "CXR_EDGE_APP_ARGS=$APP_ARGS"
    echo "KIVY_WINDOW=sdl2"
    echo "KIVY_NO_ARGS=1"
    if [[ "$MODE" == kms ]]; then
        echo "SDL_VIDEODRIVER=kmsdrm"
    fi
} > "$ROOT$ENV_FILE"

say "systemd unit -> $UNIT_DST ($MODE mode)"
sed -e "s|@USER@|$RUN_USER|g" -e "s|@PREFIX@|$PREFIX|g" -e "s|@ENV_FILE@|$ENV_FILE|g" \
    "$UNIT_SRC" > "$ROOT$UNIT_DST"

if [[ -n "$ROOT" ]]; then
    say "dry run (--root $ROOT): no packages installed, nothing enabled"
    exit 0
fi

chown -R "$RUN_USER" "$DATA_DIR"
if [[ "$MODE" == kms ]]; then
    usermod -a -G video,render,input "$RUN_USER"
    systemctl daemon-reload
    systemctl enable cxr-edge-kiosk.service
    say "enabled: the kiosk starts at the next boot (or now: sudo systemctl start cxr-edge-kiosk)"
else
    chown -R "$RUN_USER" "$USER_HOME/.config/cxr-edge" "$USER_HOME/.config/systemd"
    sudo -u "$RUN_USER" XDG_RUNTIME_DIR="/run/user/$(id -u "$RUN_USER")" \
        systemctl --user daemon-reload || true
    sudo -u "$RUN_USER" XDG_RUNTIME_DIR="/run/user/$(id -u "$RUN_USER")" \
        systemctl --user enable cxr-edge-kiosk.service || \
        echo "install.sh: enable it from the desktop session: systemctl --user enable --now cxr-edge-kiosk" >&2
    say "enabled for $RUN_USER's desktop session (starts at the next login)"
fi

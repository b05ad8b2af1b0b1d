#!/usr/bin/env bash
# Installs mosquitto (broker and clients) with the system package manager when it is
# missing and we may (root, or password-less sudo); otherwise says in one line what to do.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

if have mosquitto && have mosquitto_sub; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo"
else
    echo "mosquitto is missing: run 'sudo apt-get install mosquitto mosquitto-clients' (or your system's equivalent), then retry" >&2
    exit 1
fi

if command -v apt-get >/dev/null 2>&1; then
    echo "installing mosquitto with apt-get…" >&2
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
elif command -v dnf >/dev/null 2>&1; then
    $SUDO dnf install -y -q mosquitto
elif command -v apk >/dev/null 2>&1; then
    $SUDO apk add --quiet mosquitto mosquitto-clients
else
    echo "mosquitto is missing and no known package manager was found: install mosquitto and mosquitto-clients, then retry" >&2
    exit 1
fi

#!/usr/bin/env bash
# Installs the Debian tools the tests use when they are missing: espeak-ng makes test speech, ffmpeg muxes video,
# chromium and its driver run the ComfyUI frontend for the browser tests. Arguments pick a subset, e.g.
# `scripts/system-tools.sh espeak-ng ffmpeg` for the demo.
set -euo pipefail
wanted=("$@")
[ ${#wanted[@]} -eq 0 ] && wanted=(espeak-ng ffmpeg chromium chromium-driver)
declare -A command_of=([espeak-ng]=espeak-ng [ffmpeg]=ffmpeg [chromium]=chromium [chromium-driver]=chromedriver)
missing=()
for package in "${wanted[@]}"; do
    command -v "${command_of[$package]}" >/dev/null || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
    echo "please install ${missing[*]} with your package manager" >&2
    exit 1
fi
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

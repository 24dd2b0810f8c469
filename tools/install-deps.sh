#!/bin/sh
# Install what building and testing libvqjepa needs, from Debian's packages.
# Run as root (or through sudo) on Debian 12 or later.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
    build-essential pkg-config python3 \
    libopenblas-dev libcmocka-dev libjansson-dev libyaml-dev \
    chromium

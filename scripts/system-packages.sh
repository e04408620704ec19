#!/bin/sh
# System packages the project needs on a fresh Debian/Ubuntu machine, installed with apt only when missing.
#   sh scripts/system-packages.sh          build and run: a C compiler, the Python headers (cffi build), liblz4-dev
#                                          (the compression pool), python3-venv, hdf5-tools (h5clear: a file left
#                                          open by a killed server is made readable at restart)
#   sh scripts/system-packages.sh test     also what the tests need: redis-server (Redis tests) and chromium
#                                          (the headless browser of the web page test)
set -e
missing=""
command -v gcc >/dev/null 2>&1 || missing="$missing gcc"
python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || missing="$missing python3-dev"
[ -f /usr/include/lz4.h ] || missing="$missing liblz4-dev"
command -v h5clear >/dev/null 2>&1 || missing="$missing hdf5-tools"
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing="$missing python3-venv"
if [ "$1" = "test" ]; then
    command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
    command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
fi
[ -z "$missing" ] && exit 0
echo "installing system packages:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing

#!/bin/sh
# Create .venv and install agentctl with one extra, once, whoever asks first.
# `make run` and `make test` may start at the same moment in two terminals (the README invites
# it); both would create and pip-install into the same .venv at once and break each other. The
# lock serialises them; the second one finds the work done (or adds only its extra).
# Usage: tools/venv.sh EXTRA [PYTHON]
set -eu
extra=$1
python=${2:-python3}
venv=.venv
stamp=$venv/.installed-$extra
mkdir -p "$venv"
exec 9>"$venv.lock"
flock 9
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
    exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
fi
"$venv/bin/python" -m pip install -q -e ".[$extra]"
touch "$stamp"
# dev holds everything crew has: a test install serves `make run` too.
if [ "$extra" = dev ]; then touch "$venv/.installed-crew"; fi

# Sourced by regen.sh and live-master.sh: makes sure $SALT_VENV holds salt==$SALT_VERSION.
# salt==3008.5's sdist requires certifi>=2026.10.23, which the package index reachable here
# does not have (newest: 2026.10.18), so a plain `pip install salt==3008.5` fails on
# resolution. certifi is only a CA bundle (irrelevant for a 127.0.0.1-only run), so in that
# case Salt's own requirements/base.txt + zeromq.txt are installed with the certifi floor
# dropped, then salt==3008.5 itself with --no-deps. Salt is still exactly 3008.5.
SALT_VERSION=${SALT_VERSION:-3008.5}
SALT_VENV=${SALT_VENV:-$HOME/.cache/saltship/salt-venv}
if ! "$SALT_VENV/bin/python" -c "import salt.version,sys; sys.exit(salt.version.__version__ != '$SALT_VERSION')" 2>/dev/null; then
  echo "creating venv $SALT_VENV with salt==$SALT_VERSION" >&2
  python3.11 -m venv "$SALT_VENV" 2>/dev/null || python3 -m venv "$SALT_VENV"
  if ! "$SALT_VENV/bin/pip" install -q "salt==$SALT_VERSION"; then
    echo "plain install failed; installing Salt's requirements with the certifi floor relaxed" >&2
    dl=$(mktemp -d)
    "$SALT_VENV/bin/pip" download -q --no-deps --no-binary=:all: "salt==$SALT_VERSION" -d "$dl"
    tar -xzf "$dl"/salt-$SALT_VERSION.tar.gz -C "$dl"
    sed -e 's/^certifi>=.*/certifi/' "$dl/salt-$SALT_VERSION/requirements/base.txt" > "$dl/reqs.txt"
    cat "$dl/salt-$SALT_VERSION/requirements/zeromq.txt" >> "$dl/reqs.txt"
    "$SALT_VENV/bin/pip" install -q -r "$dl/reqs.txt"
    "$SALT_VENV/bin/pip" install -q --no-deps "salt==$SALT_VERSION"
    rm -rf "$dl"
  fi
fi

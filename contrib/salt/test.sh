#!/usr/bin/env bash
# Tests the saltship formula with real Salt (salt-call --local, no master):
#   - renders every sls (state.show_sls) with contrib/salt/pillar.example, once per receiver
#     it shows (Splunk HEC, Elasticsearch);
#   - applies saltship.config into a temporary root (pillar saltship:root) and checks the
#     written saltship.toml parses as TOML (python3 tomllib), holds the pillar's settings and
#     the secrets' file paths and only keys that are saltship options, and that each secret
#     is a file of mode 0600 whose content never appeared in the rendered states;
#   - runs `saltship check --offline --config` on the written saltship.toml (cache, state
#     file and the secret's path pointed into the test; the targets are not contacted);
#   - checks a bad saltship:service is refused at render time.
# Not tested here: pkg.installed and the service states (they need a package repository or
# URL, and systemd as PID 1).
# Salt comes from a venv: SALT_VENV (default /tmp/pkg-salt-venv) is made when missing, as
# testdata/regen.sh does it. Usage: bash contrib/salt/test.sh [path/to/saltship]
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
SALT_VENV=${SALT_VENV:-/tmp/pkg-salt-venv}
SALT_VERSION=3008.5
bin=${1:-}
[ -n "$bin" ] || for b in target/release/saltship target/debug/saltship; do
    [ -x "$b" ] && { bin=$b; break; }
done

if ! "$SALT_VENV/bin/python" -c "import salt.version,sys; sys.exit(salt.version.__version__ != '$SALT_VERSION')" 2>/dev/null; then
    echo "creating $SALT_VENV with salt==$SALT_VERSION" >&2
    python3.11 -m venv "$SALT_VENV" 2>/dev/null || python3 -m venv "$SALT_VENV"
    if ! "$SALT_VENV/bin/pip" install -q "salt==$SALT_VERSION"; then
        # The index reachable here lacks the certifi that salt's metadata asks for; see
        # testdata/regen.sh: install Salt's own requirements with that floor relaxed.
        dl=$(mktemp -d)
        "$SALT_VENV/bin/pip" download -q --no-deps --no-binary=:all: "salt==$SALT_VERSION" -d "$dl"
        tar -xzf "$dl/salt-$SALT_VERSION.tar.gz" -C "$dl"
        sed -e 's/^certifi>=.*/certifi/' "$dl/salt-$SALT_VERSION/requirements/base.txt" > "$dl/reqs.txt"
        cat "$dl/salt-$SALT_VERSION/requirements/zeromq.txt" >> "$dl/reqs.txt"
        "$SALT_VENV/bin/pip" install -q -r "$dl/reqs.txt"
        "$SALT_VENV/bin/pip" install -q --no-deps "salt==$SALT_VERSION"
        rm -rf "$dl"
    fi
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

# The options saltship knows, for checking the written keys (when a binary is at hand).
: > "$tmp/options"
if [ -n "$bin" ]; then
    for cmd in watch sync backfill; do
        "$bin" "$cmd" --help | grep -oE '^\s+(-\w, )?--[a-z][a-z-]+' | sed 's/.*--//'
    done | sort -u > "$tmp/options"
fi

run_receiver() {
    local receiver=$1 dir=$tmp/$1
    mkdir -p "$dir/conf" "$dir/pillar" "$dir/root"
    cat > "$dir/conf/minion" <<CONF
id: saltship-formula-test
file_client: local
root_dir: $dir/salt
file_roots:
  base:
    - $repo/contrib/salt
pillar_roots:
  base:
    - $dir/pillar
log_file: $dir/salt/minion.log
log_level_logfile: warning
CONF
    printf "base:\n  '*':\n    - saltship\n    - saltship_test\n" > "$dir/pillar/top.sls"
    sed "s/^{%- set receiver = 'hec' %}/{%- set receiver = '$receiver' %}/" \
        contrib/salt/pillar.example > "$dir/pillar/saltship.sls"
    grep -q "set receiver = '$receiver'" "$dir/pillar/saltship.sls" || fail "$receiver: no receiver switch in pillar.example"
    printf "saltship:\n  root: %s\n" "$dir/root" > "$dir/pillar/saltship_test.sls"
    local call=("$SALT_VENV/bin/salt-call" --local -c "$dir/conf" --retcode-passthrough)

    for sls in saltship saltship.config saltship.service; do
        if ! "${call[@]}" --out=json state.show_sls "$sls" > "$dir/show-$sls.json" 2> "$dir/show.err"; then
            fail "$receiver: state.show_sls $sls"; cat "$dir/show.err" "$dir/show-$sls.json" >&2; continue
        fi
        python3 - "$dir/show-$sls.json" "$sls" <<'PY' || fail "$receiver: state.show_sls $sls rendered nothing usable"
import json, sys
states = json.load(open(sys.argv[1]))["local"]
assert isinstance(states, dict) and states, states
print(f"rendered {sys.argv[2]}: {len(states)} states ({', '.join(sorted(states))})")
PY
    done

    if ! "${call[@]}" --out=json state.apply saltship.config > "$dir/apply.json" 2> "$dir/apply.err"; then
        fail "$receiver: state.apply saltship.config"; cat "$dir/apply.err" "$dir/apply.json" >&2; return
    fi
    python3 - "$dir" "$receiver" "$tmp/options" <<'PY' || fail "$receiver: the written files"
import json, os, stat, sys, tomllib
dir, receiver, options_file = sys.argv[1:]
results = json.load(open(f"{dir}/apply.json"))["local"]
bad = [k for k, v in results.items() if not v["result"]]
assert not bad, f"states failed: {bad}"
conf_dir = f"{dir}/root/etc/saltship"
with open(f"{conf_dir}/saltship.toml", "rb") as f:
    config = tomllib.load(f)
expect = {
    "hec": {"sink": "splunk-hec", "target": ["https://splunk-hec.example.com:8088"],
            "hec-index": "salt", "hec-token-file": "/etc/saltship/hec-token"},
    "es": {"sink": "elasticsearch", "max-rate": 5000, "only-failures": False,
           "es-api-key-file": "/etc/saltship/es-api-key"},
}[receiver]
for key, value in expect.items():
    assert config.get(key) == value, f"{key}: {config.get(key)!r}, want {value!r}"
options = set(open(options_file).read().split())
if options:
    unknown = sorted(set(config) - options)
    assert not unknown, f"keys that are no saltship option: {unknown}"
secret = {"hec": "hec-token", "es": "es-api-key"}[receiver]
path = f"{conf_dir}/{secret}"
mode = stat.S_IMODE(os.stat(path).st_mode)
assert mode == 0o600, f"{path}: mode {mode:o}"
value = open(path).read().strip()
assert value, f"{path} is empty"
for shown in os.listdir(dir):
    if shown.startswith("show-"):
        assert value not in open(f"{dir}/{shown}").read(), f"the secret is in {shown}"
cmode = stat.S_IMODE(os.stat(f"{conf_dir}/saltship.toml").st_mode)
assert cmode & 0o022 == 0, f"saltship.toml is writable by others: {cmode:o}"
print(f"{receiver}: saltship.toml parses as TOML with {len(config)} keys "
      f"({', '.join(sorted(config))}); {secret} mode 0600")
PY
    # saltship itself checks the written file: every key known, every value valid. Only the
    # paths that name the host are pointed into the test: the cache (the bundled one), the
    # state file, and the secret the file names under /etc/saltship (written under the root).
    if [ -n "$bin" ]; then
        local secret
        secret=$(ls "$dir/root/etc/saltship" | grep -v '^saltship.toml$' | head -1)
        if "$bin" check --offline --config "$dir/root/etc/saltship/saltship.toml" \
            --cache-dir testdata/jobs --state-file "$dir/state/state" \
            "--$secret-file" "$dir/root/etc/saltship/$secret" > "$dir/check.out" 2> "$dir/check.err"; then
            echo "$receiver: saltship check --offline --config <written saltship.toml>:"
            sed 's/^/    /' "$dir/check.out"
        else
            fail "$receiver: saltship check --config on the written file"
            cat "$dir/check.out" "$dir/check.err" >&2
        fi
        grep -q "options valid, not contacted" "$dir/check.out" || fail "$receiver: check saw no target"
        # The check reads the file: a key misspelt in it is refused, named (exit 2).
        { cat "$dir/root/etc/saltship/saltship.toml"; echo 'only-failure = true'; } > "$dir/typo.toml"
        "$bin" check --offline --config "$dir/typo.toml" --cache-dir testdata/jobs \
            --state-file "$dir/state/state" > /dev/null 2> "$dir/typo.err" && status=0 || status=$?
        if [ "$status" = 2 ] && grep -q "only-failure" "$dir/typo.err"; then
            echo "$receiver: a misspelt key in that file: exit 2, $(sed 's/^[0-9TZ:.-]* //' "$dir/typo.err" | head -1)"
        else
            fail "$receiver: a misspelt key: exit $status"; cat "$dir/typo.err" >&2
        fi
        [ ! -e "$dir/state" ] || fail "$receiver: check made the state folder"
    else
        echo "not checked with saltship check: no binary (cargo build first, or give its path)" >&2
    fi
    # A second run changes nothing.
    "${call[@]}" --out=json state.apply saltship.config > "$dir/again.json" 2>/dev/null || fail "$receiver: second apply"
    python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["local"]
changed = [k for k, v in r.items() if v["changes"]]
assert not changed, changed
print("second apply: no changes")' "$dir/again.json" || fail "$receiver: the second apply changed something"
}

run_receiver hec
run_receiver es

# A service mode the formula does not know is refused when rendering.
dir=$tmp/hec
printf "saltship:\n  root: %s\n  service: sometimes\n" "$dir/root" > "$dir/pillar/saltship_test.sls"
if "$SALT_VENV/bin/salt-call" --local -c "$dir/conf" --retcode-passthrough --out=json \
    state.show_sls saltship.service > "$dir/bad.json" 2>&1; then
    fail "service: sometimes was rendered"
elif ! grep -q "must be watch, sync or none" "$dir/bad.json"; then
    fail "service: sometimes was refused without the reason"; cat "$dir/bad.json" >&2
else
    echo "service: sometimes is refused: must be watch, sync or none"
fi

[ "$fails" = 0 ] || { echo "salt formula: $fails failure(s)" >&2; exit 1; }
echo "salt formula: ok"

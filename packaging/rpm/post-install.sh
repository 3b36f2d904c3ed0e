# saltship's %post: the checkpoint folder, owned by the saltship user, and what
# %systemd_post expands to: presets applied on a first install ($1 is 1), which leave every
# unit disabled (50-saltship.preset; set a target in /etc/saltship/saltship.toml, then
# `systemctl enable --now saltship-watch.service`).
install -d -o saltship -g saltship -m 0755 /var/lib/saltship
if [ "$1" -eq 1 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload preset saltship-watch.service saltship-sync.service \
        saltship-sync.timer saltship-sync.path >/dev/null 2>&1 || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
exit 0

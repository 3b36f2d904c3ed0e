# saltship's %preun, as %systemd_preun expands: when the package is erased ($1 is 0), not on
# upgrade, the units are disabled and stopped, so no link is left behind.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now saltship-watch.service saltship-sync.timer \
        saltship-sync.path saltship-sync.service >/dev/null 2>&1 || :
fi
exit 0

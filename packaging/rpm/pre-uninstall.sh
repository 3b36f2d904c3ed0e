# saltship's %preun: stop the units when the package is erased ($1 is 0), not on upgrade.
if [ "$1" = 0 ] && [ -d /run/systemd/system ]; then
    systemctl stop saltship-watch.service saltship-sync.timer saltship-sync.path \
        saltship-sync.service >/dev/null 2>&1 || :
fi
exit 0

# saltship's %postun, as %systemd_postun_with_restart expands: systemd forgets the removed
# units, and an upgrade ($1 is 1 or more) restarts the units that run onto the new binary
# (try-restart starts nothing; a stop confirms and saves what was sent). /var/lib/saltship
# and the user stay (an rpm erase keeps data; remove them by hand if wanted).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart saltship-watch.service saltship-sync.service >/dev/null 2>&1 || :
    fi
fi
exit 0

# saltship's %postun: let systemd forget the removed units. /var/lib/saltship and the user
# stay (an rpm erase keeps data; remove them by hand if wanted).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
exit 0

# saltship's %pre: the system user the units run as (no login, home /var/lib/saltship).
getent group saltship >/dev/null || groupadd --system saltship
getent passwd saltship >/dev/null || useradd --system --gid saltship \
    --home-dir /var/lib/saltship --no-create-home --shell /sbin/nologin \
    --comment "saltship (Salt job cache shipper)" saltship
exit 0

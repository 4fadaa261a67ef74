# heartwatch %postun. $1 is 0 when the package is erased. rpm has no purge:
# like `apt remove`, erasing keeps the administrator's rules in
# /etc/heartwatch/rules.d (a changed heartwatch.conf is saved as .rpmsave)
# and the reboot record in /var/lib/heartwatch.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || :
fi
exit 0

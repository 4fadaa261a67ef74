# heartwatch %post. $1 is 1 on a first install, 2 or more on an upgrade.
# Install: enable and start. Upgrade: restart in place with the hardware
# watchdog left armed across the restart (see the deb postinst, which does
# the same).
UNIT=heartwatch.service
# Read by the daemon when it is stopped; `keep-armed` makes that one stop
# skip the magic close. systemd empties /run/heartwatch when the daemon stops.
NEXT_STOP=/run/heartwatch/next-stop

if [ "$1" -eq 1 ]; then
	systemctl enable "$UNIT" >/dev/null 2>&1 || :
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload >/dev/null 2>&1 || :
		systemctl start "$UNIT" || echo "heartwatch: start failed, see: journalctl -u $UNIT" >&2
	fi
elif [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || :
	if systemctl --quiet is-active "$UNIT"; then
		if heartwatch check; then
			{ printf 'keep-armed\n' >"$NEXT_STOP.tmp" && mv -f "$NEXT_STOP.tmp" "$NEXT_STOP"; } 2>/dev/null || :
			systemctl restart "$UNIT" || echo "heartwatch: restart failed, see: journalctl -u $UNIT" >&2
		else
			echo "heartwatch: the new version rejects the configuration; the running daemon was not restarted." >&2
			echo "heartwatch: fix it, then run: systemctl restart $UNIT" >&2
		fi
	fi
fi
exit 0

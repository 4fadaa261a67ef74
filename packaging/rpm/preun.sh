# heartwatch %preun. $1 is 0 when the package is erased, 1 or more when this
# runs as the old half of an upgrade (then the daemon keeps running: the new
# package's %post restarts it).
UNIT=heartwatch.service
# `disarm` makes this one stop disarm the watchdog even with
# KeepArmedOnStop=yes, so erasing the package never resets the host.
NEXT_STOP=/run/heartwatch/next-stop

if [ "$1" -eq 0 ]; then
	if [ -d /run/systemd/system ] && systemctl --quiet is-active "$UNIT"; then
		{ printf 'disarm\n' >"$NEXT_STOP.tmp" && mv -f "$NEXT_STOP.tmp" "$NEXT_STOP"; } 2>/dev/null || :
	fi
	systemctl --no-reload disable --now "$UNIT" >/dev/null 2>&1 || :
fi
exit 0

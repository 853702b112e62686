#!/bin/sh
# App Service (Linux) startup command: `sockwatch snat` in the background, restarted when it fails,
# then the app itself in the foreground (it keeps the container's lifetime). Set as the Startup Command:
#
#   /home/site/sockwatch/start-with-sockwatch.sh dotnet /home/site/wwwroot/MyApp.dll
#
# Every path carries the instance name (COMPUTERNAME, which App Service sets per instance; else the
# host name), so instances sharing /home never share a pidfile, a lock, a log or a state directory:
#   logs, dumps, traces, pidfile, locks   /home/LogFiles/sockwatch/$COMPUTERNAME/
#   pending-upload records                /home/site/sockwatch/state/$COMPUTERNAME/
#   what sockwatch printed                /home/LogFiles/sockwatch/$COMPUTERNAME/sockwatch.out
# Settings (App Service application settings are environment variables here):
#   SOCKWATCH            the executable (default /home/site/sockwatch/sockwatch)
#   SOCKWATCH_SNAT_ARGS  snat's arguments (default: -t 100 --keep-running enable-dump-trace)
#   SOCKWATCH_HOME       the shared storage (default /home)
#   SOCKWATCH_RESTART_DELAY  seconds before a restart (default 30)
#   A directory `lib` beside the executable (e.g. holding libatomic.so.1, which slim .NET images lack)
#   is put on sockwatch's LD_LIBRARY_PATH only, never on the app's.
#   DIAGNOSTICS_AZUREBLOBCONTAINERSASURL  where dumps and traces are uploaded (read by sockwatch)
# A run that ends with exit 0 (stopped with `sockwatch snat -c --log-dir DIR`, or -d elapsed) or 2 (bad
# arguments) is not restarted; exit 1 (e.g. no .NET process yet: the app starts after this loop) and
# a killed run are restarted after the delay. The next container start runs this script again.
set -eu

[ "$#" -gt 0 ] || { echo "usage: $0 APP-COMMAND [ARGS...]" >&2; exit 2; }
home="${SOCKWATCH_HOME:-/home}"
exe="${SOCKWATCH:-$home/site/sockwatch/sockwatch}"
snat_args="${SOCKWATCH_SNAT_ARGS:--t 100 --keep-running enable-dump-trace}"
delay="${SOCKWATCH_RESTART_DELAY:-30}"
COMPUTERNAME="${COMPUTERNAME:-$(cat /proc/sys/kernel/hostname)}"
export COMPUTERNAME
log_dir="$home/LogFiles/sockwatch/$COMPUTERNAME"
state_dir="$home/site/sockwatch/state/$COMPUTERNAME"
mkdir -p "$log_dir"
lib_dir="$(dirname "$exe")/lib"
if [ -d "$lib_dir" ]; then run_exe() { LD_LIBRARY_PATH="$lib_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$exe" "$@"; }; else run_exe() { "$exe" "$@"; }; fi

(
  trap '' HUP
  while :; do
    # shellcheck disable=SC2086 # snat_args is a word list on purpose
    status=0
    run_exe snat $snat_args --log-dir "$log_dir" --state-dir "$state_dir" </dev/null >>"$log_dir/sockwatch.out" 2>&1 || status=$?
    case "$status" in
      0 | 2)
        echo "$(date -u '+%Y-%m-%dT%H:%M:%SZ') sockwatch exited $status: not restarted" >>"$log_dir/sockwatch.out"
        break
        ;;
    esac
    echo "$(date -u '+%Y-%m-%dT%H:%M:%SZ') sockwatch exited $status: restart in ${delay}s" >>"$log_dir/sockwatch.out"
    sleep "$delay"
  done
) &

exec "$@"

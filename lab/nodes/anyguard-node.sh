#!/bin/sh
# Entry point of an anyguard node under containerlab (`cmd:` in anycast.clab.yml): the
# same programs and configs the namespace runner starts, in a container. Usage: SITE.
set -eu
site="$1"
# The service address must exist before the HTTP target binds it (containerlab runs the
# node's exec lines only after the entry point started).
ip addr replace 203.0.113.10/32 dev lo
ip addr replace 2001:db8:100::10/128 dev lo
# eth1 appears when containerlab wires the links; anyguard binds its local address on it.
i=0
while [ $i -lt 100 ] && ! ip -4 addr show dev eth1 2>/dev/null | grep -q 198.18; do
  i=$((i + 1)); sleep 0.2
done
python3 /lab/nodes/site-http.py "$site" 203.0.113.10 80 &
python3 /lab/nodes/site-http.py "$site" 2001:db8:100::10 80 &
exec /usr/local/bin/anyguard run --config "/lab/sites/$site/anyguard.toml"

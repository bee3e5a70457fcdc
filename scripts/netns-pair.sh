#!/bin/sh
# netns-pair.sh up|down [NAME]
#
# Creates (up) or removes (down) two network namespaces NAME-a and NAME-b
# joined by a veth pair, with addresses 10.231.7.1/24 and 10.231.7.2/24 and a
# multicast route, for trying shmfs registration in network mode by hand:
#
#   sudo scripts/netns-pair.sh up
#   sudo ip netns exec shmfs-a PROGRAM...   # an agent with Mode network
#   sudo ip netns exec shmfs-b PROGRAM...
#   sudo scripts/netns-pair.sh down
#
# The addresses exist only inside the namespaces; nothing touches the host's
# interfaces. The Go test TestNetworkModeNamespaces does the same itself.
set -eu
cmd=${1:-}
name=${2:-shmfs}
a=$name-a
b=$name-b
case $cmd in
up)
	ip netns add "$a"
	ip netns add "$b"
	ip link add veth-a netns "$a" type veth peer name veth-b netns "$b"
	ip -n "$a" addr add 10.231.7.1/24 dev veth-a
	ip -n "$b" addr add 10.231.7.2/24 dev veth-b
	for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
	ip -n "$a" link set veth-a up
	ip -n "$b" link set veth-b up
	ip -n "$a" route add 224.0.0.0/4 dev veth-a
	ip -n "$b" route add 224.0.0.0/4 dev veth-b
	echo "namespaces $a and $b ready"
	;;
down)
	ip netns del "$a" 2>/dev/null || true
	ip netns del "$b" 2>/dev/null || true
	;;
*)
	echo "usage: $0 up|down [NAME]" >&2
	exit 2
	;;
esac

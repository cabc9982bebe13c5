#!/bin/sh
# Test helper: records SIGTERM in "$1", for itself and for a process it started in the
# same process group. It never reads stdin, so only the signal can end it.
out="$1"
(
	trap 'echo child-term >> "$out"; exit 0' TERM
	echo child-ready >> "$out"
	while :; do sleep 0.05; done
) &
trap 'echo parent-term >> "$out"; exit 0' TERM
echo parent-ready >> "$out"
while :; do sleep 0.05; done

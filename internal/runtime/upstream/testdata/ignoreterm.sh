#!/bin/sh
# Test helper: ignores SIGTERM (and stdin EOF), so only SIGKILL ends it.
trap '' TERM
echo ready >> "$1"
while :; do sleep 0.05; done

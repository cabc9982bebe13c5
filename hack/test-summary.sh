#!/usr/bin/env bash
# Prints a closing "N passed, N failed" line (Go test packages) from `go test` output.
log=${1:?usage: test-summary.sh go-test.log}
ok=$(grep -cE '^ok[[:space:]]' "$log" || true)
failed=$(grep -cE '^(FAIL|---[[:space:]]FAIL)[[:space:]]' "$log" || true)
echo "packages: ${ok} passed, ${failed} failed"

package testutil

// SilentListenServer is a fake stdio MCP server (a /bin/sh -c script): it answers
// initialize and every other request with an empty result, except subscriptions/listen,
// which a server answers only when the stream ends.
const SilentListenServer = `while IFS= read -r line; do
  id=$(printf '%s' "$line" | sed -n 's/.*"id":\([0-9]*\).*/\1/p')
  [ -z "$id" ] && continue
  case "$line" in
  *'"method":"initialize"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"fake","version":"1"}}}\n' "$id" ;;
  *'"method":"subscriptions/listen"'*) ;;
  *) printf '{"jsonrpc":"2.0","id":%s,"result":{}}\n' "$id" ;;
  esac
done`

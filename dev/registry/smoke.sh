#!/usr/bin/env bash
# Smoke test of a running dev registry through the Confluent-compatible API (curl only).
# Uses a throwaway subject name so it can run against a registry that already has data, and
# deletes it permanently at the end.
set -euo pipefail

REGISTRY_PORT="${REGISTRY_PORT:-8081}"
B="http://localhost:$REGISTRY_PORT/apis/ccompat/v7"
CT='Content-Type: application/vnd.schemaregistry.v1+json'
SUBJECT="smoke-$$-$RANDOM-value"

fail() { echo "smoke: FAIL: $*" >&2; exit 1; }
# req METHOD PATH [BODY] -> sets CODE and BODY
req() {
  local out
  out="$(curl -s -X "$1" -H "$CT" ${3:+-d "$3"} -w '\n%{http_code}' "$B$2")" || fail "curl $1 $2"
  CODE="${out##*$'\n'}"; BODY="${out%$'\n'*}"
}
field() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" <<<"$BODY"; }
rec() { # rec <extra fields json> -> register-request body for record x.Smoke
  printf '{"schema":"{\\"type\\":\\"record\\",\\"name\\":\\"Smoke\\",\\"namespace\\":\\"x\\",\\"fields\\":[{\\"name\\":\\"a\\",\\"type\\":\\"string\\"}%s]}"}' "$1"
}

V1="$(rec '')"
V2="$(rec ',{\"name\":\"b\",\"type\":[\"null\",\"string\"],\"default\":null}')"
BAD="$(rec ',{\"name\":\"b\",\"type\":[\"null\",\"string\"],\"default\":null},{\"name\":\"c\",\"type\":\"int\"}')"

req GET /config
grep -q '"BACKWARD_TRANSITIVE"' <<<"$BODY" || echo "smoke: note: global compatibility is $BODY"

req POST "/subjects/$SUBJECT/versions" "$V1"
[ "$CODE" = 200 ] || fail "register v1: $CODE $BODY"
ID1="$(field id)"

req GET "/schemas/ids/$ID1"
[ "$CODE" = 200 ] && grep -q 'Smoke' <<<"$BODY" || fail "get id $ID1: $CODE $BODY"

req POST "/subjects/$SUBJECT/versions" "$V1"
[ "$(field id)" = "$ID1" ] || fail "re-register v1 gave $BODY, expected id $ID1"

req POST "/subjects/$SUBJECT/versions" "$V2"
[ "$CODE" = 200 ] || fail "register compatible v2: $CODE $BODY"
ID2="$(field id)"
[ "$ID2" != "$ID1" ] || fail "v2 got the same id as v1"

req POST "/subjects/$SUBJECT/versions" "$BAD"
[ "$CODE" = 409 ] || fail "incompatible v3 should be 409, got $CODE $BODY"

req POST "/subjects/$SUBJECT" "$V1"
[ "$CODE" = 200 ] && [ "$(field id)" = "$ID1" ] && [ "$(field version)" = 1 ] || fail "lookup v1: $CODE $BODY"

# Storage is persistent: soft-delete, then hard-delete, so the throwaway subject does not stay
# behind (ids it used are not handed out again to other schemas).
req DELETE "/subjects/$SUBJECT"
[ "$CODE" = 200 ] || fail "delete subject: $CODE $BODY"
req DELETE "/subjects/$SUBJECT?permanent=true"
[ "$CODE" = 200 ] || fail "permanent delete subject: $CODE $BODY"
echo "smoke: OK ($B; ids $ID1,$ID2; incompatible -> 409)"

#!/usr/bin/env bash
# Re-extracts src/idp/ui/locales/messages.pot from the templates and the Python sources, then
# merges it into every catalogue: new messages arrive untranslated, reworded ones as fuzzy (not
# used until reviewed). Translate them in each ui/locales/<lang>/LC_MESSAGES/messages.po.
#
#   scripts/extract-messages.sh          extract and update the catalogues (make messages)
#   scripts/extract-messages.sh --check  exit 1 if messages.pot is out of date; writes nothing
#
# A new language:
#   .venv/bin/pybabel init -i src/idp/ui/locales/messages.pot -d src/idp/ui/locales -l LANG
#
# Python page texts are the first argument of ErrorPage/FlowError/LogoutError (shown through
# str(exc)) and the second of error_page(request, message); other literals are marked with N_().
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
PYBABEL=("$PYTHON" -m babel.messages.frontend)
LOCALES=src/idp/ui/locales
POT=$LOCALES/messages.pot
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -n 1)

extract() {  # $1: the .pot to write
  "${PYBABEL[@]}" -q extract \
    -F babel.cfg \
    -k N_ -k ErrorPage -k FlowError -k LogoutError -k error_page:2 \
    -c "Translators:" \
    --add-location=file --sort-by-file \
    --project=idp --version="$VERSION" --copyright-holder="idp contributors" \
    -o "$1" src/idp
}

msgids() {  # $1: a .pot or .po; prints its msgids, sorted, one a line
  "$PYTHON" - "$1" <<'PY'
import sys
from babel.messages.pofile import read_po
with open(sys.argv[1], "rb") as source:
    print("\n".join(sorted(repr(message.id) for message in read_po(source) if message.id)))
PY
}

if [ "${1:-}" = "--check" ]; then
  fresh=$(mktemp)
  trap 'rm -f "$fresh"' EXIT
  extract "$fresh"
  if ! diff <(msgids "$POT") <(msgids "$fresh"); then
    echo "$POT is out of date: run 'make messages', then translate the new messages" >&2
    exit 1
  fi
  exit 0
fi

extract "$POT"
for po in "$LOCALES"/*/LC_MESSAGES/messages.po; do
  [ -e "$po" ] || continue
  lang=$(basename "$(dirname "$(dirname "$po")")")
  "${PYBABEL[@]}" -q update -i "$POT" -d "$LOCALES" -l "$lang" --ignore-obsolete
done
echo "wrote $POT and updated the catalogues in $LOCALES"

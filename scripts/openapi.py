#!/usr/bin/env python3
"""Write the API's OpenAPI document to openapi/openapi.json (`make openapi`), or with --check,
fail if the committed file differs from what the code generates now."""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "openapi" / "openapi.json"


def generated() -> str:
    from idp.api.openapi import build_openapi, render
    from idp.app import create_app
    from idp.settings import Settings

    # Building the app touches no database and no keys: only the routes are read.
    return render(build_openapi(create_app(Settings(_env_file=None))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    text = generated()
    if args.check:
        committed = DOCUMENT.read_text() if DOCUMENT.exists() else ""
        if committed == text:
            return 0
        sys.stdout.writelines(difflib.unified_diff(
            committed.splitlines(keepends=True), text.splitlines(keepends=True),
            "openapi/openapi.json (committed)", "openapi/openapi.json (generated)"))
        print("openapi/openapi.json is out of date: run `make openapi`", file=sys.stderr)
        return 1
    DOCUMENT.parent.mkdir(exist_ok=True)
    DOCUMENT.write_text(text)
    print(f"wrote {DOCUMENT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

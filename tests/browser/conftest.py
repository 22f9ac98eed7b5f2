"""Browser-test fixtures: a real `idp` server started as `make run` starts it, and headless Chromium.

The server runs in its own process (`idp migrate`, `idp demo`, `idp serve`) on a fresh SQLite
database and a free port, with the real argon2 parameters. Chromium is Debian's (/usr/bin/chromium):
Playwright cannot download browsers here. Without it the tests are skipped, except on CI
(CI=true), where a missing browser is a failure: a skipped browser test proves nothing.

Everything here is synchronous (playwright.sync_api). Playwright's sync API runs its own event
loop, which stays the thread's running loop for as long as Playwright is open; that is why the
browser is module-scoped (see `browser`), so it never overlaps the async tests' session loop.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("IDP_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
IDP = Path(sys.executable).with_name("idp")  # the console script of the venv running pytest
ON_CI = os.environ.get("CI") == "true"


def _unavailable(reason: str) -> None:
    if ON_CI:
        pytest.fail(f"browser tests cannot be skipped on CI (CI=true): {reason}", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(args: list[str], env: dict, cwd: Path) -> str:
    done = subprocess.run([str(IDP), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"idp {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def idp_server(tmp_path_factory):
    """`make run` in a subprocess; yields {"url", "demo_output", "log"}; always terminates the
    server, as soon as the module's tests are done (not at the end of the whole session)."""
    if not IDP.exists():
        pytest.fail(f"the idp console script is missing: {IDP}", pytrace=False)
    tmp = tmp_path_factory.mktemp("browser-idp")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update({
        "IDP_ISSUER": url,
        "IDP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/idp.db",
        "IDP_DEV_KEY_DIR": str(tmp / "keys"),
        "IDP_DEMO": "true",
        "IDP_ARGON2_MEMORY_KIB": "19456",  # the real default (OWASP minimum), not the test's cheap one
        "IDP_LOG_JSON": "true",
    })
    # cwd=tmp: no stray .env of the developer's is read (Settings reads ./.env).
    _run(["migrate"], env, tmp)
    demo_output = _run(["demo"], env, tmp)

    log_path = tmp / "server.log"
    log = log_path.open("w")
    server = subprocess.Popen([str(IDP), "serve", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            if server.poll() is not None:
                pytest.fail(f"idp serve exited ({server.returncode}):\n{log_path.read_text()}", pytrace=False)
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1) as reply:
                    if reply.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"idp serve did not become healthy at {url}:\n{log_path.read_text()}", pytrace=False)
            time.sleep(0.1)
        yield {"url": url, "demo_output": demo_output, "log": log_path}
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()


@pytest.fixture(scope="session", autouse=True)
def _browser_available():
    """Checked first (autouse), so that a skip happens before any server is started."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def browser(_browser_available):
    """Module scope, never session: while the sync API is open, its event loop is the thread's
    running loop, and the async tests' session loop (asyncio.run in their fixtures) would fail.
    So Playwright is stopped before pytest moves on to another module. Keep browser test modules
    free of async tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    """A fresh page in its own context: its own cookie jar, as a new browser profile would have."""
    context = browser.new_context()
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()

"""Real-browser helpers for the console tests: Debian's headless Chromium driven by Selenium,
each call run in a thread (the app under test serves from this test's event loop), a TCP proxy
whose link can be cut and restored, screenshots and the axe-core check."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from cad.settings import REPO_ROOT

CHROMIUM = Path(os.environ.get("CAD_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CAD_CHROMEDRIVER", "/usr/bin/chromedriver"))
SCREENSHOTS = Path(os.environ.get("CAD_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts")) / "screenshots"
# Chromium as root in a container: no sandbox, no GPU, nothing that phones home.
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--window-size=1400,1000")
T = TypeVar("T")


def require_chromium() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        msg = (f"{', '.join(missing)} absent: `apt-get install -y chromium chromium-driver` "
               "(.ci/run does)")
        if os.environ.get("CAD_REQUIRE_CHROMIUM") == "1":
            pytest.fail(msg + "; CAD_REQUIRE_CHROMIUM=1 makes this a failure")
        pytest.skip(msg)


class Browser:
    """One Chromium with its own profile; every WebDriver call goes through ``run`` (a thread)."""

    def __init__(self, name: str) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.name = name
        self.profile = tempfile.mkdtemp(prefix=f"cad-chromium-{name}-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = str(CHROMIUM)
        for flag in CHROMIUM_FLAGS:
            opts.add_argument(flag)
        opts.add_argument(f"--user-data-dir={self.profile}")
        # SE_OFFLINE: Selenium Manager must never try to download a driver or a browser.
        os.environ.setdefault("SE_OFFLINE", "true")
        self.driver = webdriver.Chrome(options=opts, service=Service(str(CHROMEDRIVER)))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    async def get(self, url: str) -> None:
        await self.run(self.driver.get, url)

    async def js(self, script: str, *args: Any) -> Any:
        return await self.run(self.driver.execute_script, script, *args)

    async def wait_for(self, script: str, *args: Any, timeout_s: float = 10.0,
                       what: str = "") -> Any:
        """Poll a JS expression (``return ...``) until it is truthy; its value."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        def wait() -> Any:
            return WebDriverWait(self.driver, timeout_s, poll_frequency=0.05).until(
                lambda d: d.execute_script(script, *args))
        try:
            return await self.run(wait)
        except TimeoutException:
            await self.screenshot(f"timeout-{self.name}")
            raise AssertionError(f"{self.name}: not within {timeout_s} s: {what or script}") from None

    async def type_into(self, css: str, text: str) -> None:
        from selenium.webdriver.common.by import By

        def do() -> None:
            e = self.driver.find_element(By.CSS_SELECTOR, css)
            e.clear()
            e.send_keys(text)
        await self.run(do)

    async def keys(self, css: str, *keys: str) -> None:
        from selenium.webdriver.common.by import By

        await self.run(lambda: self.driver.find_element(By.CSS_SELECTOR, css).send_keys(*keys))

    async def click(self, css: str) -> None:
        from selenium.webdriver.common.by import By

        await self.run(lambda: self.driver.find_element(By.CSS_SELECTOR, css).click())

    async def login(self, base_url: str, view: str, username: str, password: str) -> None:
        await self.get(f"{base_url}/#{view}")
        await self.wait_for("return !document.querySelector('#login').hidden", what="login form")
        await self.type_into("#username", username)
        await self.type_into("#password", password)
        await self.click("#loginform button")
        await self.wait_for("return document.querySelector('#conn').dataset.state === 'live'",
                            timeout_s=20, what="live connection")

    async def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        await self.run(self.driver.save_screenshot, str(path))
        return path

    async def serious_accessibility_violations(self) -> list[str]:
        """axe-core (shipped inside axe-selenium-python, injected from that local file) on
        the current page: the serious and critical violations."""
        from axe_selenium_python import Axe  # type: ignore[import-untyped]  # no type info

        def check() -> list[str]:
            axe = Axe(self.driver)
            axe.inject()
            result = axe.run()
            return [f"{v['id']} ({v['impact']}): {v['help']} at "
                    f"{[n['target'] for n in v['nodes']][:3]}"
                    for v in result["violations"] if v.get("impact") in ("serious", "critical")]
        return await self.run(check)

    def quit(self) -> None:
        with contextlib.suppress(Exception):
            self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)


# --- small steps the public pages' browser tests share ----------------------------------------

async def set_scripts(b: Browser, *, enabled: bool) -> None:
    """Turn the page's JavaScript off (a resident without scripts) or back on."""
    await b.run(b.driver.execute_cdp_cmd, "Emulation.setScriptExecutionDisabled",
                {"value": not enabled})


async def choose(b: Browser, css: str, value: str) -> None:
    """Pick ``value`` in the <select> at ``css``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    await b.run(lambda: Select(b.driver.find_element(By.CSS_SELECTOR, css)).select_by_value(value))


async def text_of(b: Browser, css: str) -> Any:
    return await b.js(f"return document.querySelector({css!r}).textContent")


@contextlib.contextmanager
def browsers(*names: str) -> Iterator[list[Browser]]:
    made: list[Browser] = []
    try:
        for name in names:
            made.append(Browser(name))
        yield made
    finally:
        for b in made:
            b.quit()


class CuttableLink:
    """A TCP proxy in front of the app: ``cut()`` drops every connection through it and
    refuses new ones (as a pulled cable or a dead Wi-Fi would), ``restore()`` lets them in
    again. The browser behind it sees a real network failure."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = True
        self.server: asyncio.Server | None = None
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_w}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()
                self._writers.discard(dst)

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    def cut(self) -> None:
        self.up = False
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.up = True

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

"""Playwright around Debian's Chromium for the dashboard tests: browser contexts that refuse
(and record) every request to another origin than the server's, sign-in through the real
form, a page's CSRF token, screenshots and the "no horizontal scroll" check.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, Page, Route

from support.webserver import PASSWORD

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def output_dir(root: Path) -> Path:
    """Where screenshots go: ``$PGVAULT_TEST_OUTPUT/web`` or ``<repo>/test-output/web``."""
    base = Path(os.environ.get("PGVAULT_TEST_OUTPUT", root / "test-output"))
    path = base / "web"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Guarded:
    """Browser contexts on one server; every request is intercepted and any request to
    another origin is aborted and recorded in ``outside``."""

    browser: Browser
    origin: str
    outside: list[str] = field(default_factory=list)
    contexts: list[BrowserContext] = field(default_factory=list)

    def context(self, **options: Any) -> BrowserContext:
        """A new context (own cookies) whose requests are checked."""
        context = self.browser.new_context(base_url=self.origin, **options)
        context.set_default_timeout(30_000)

        def guard(route: Route) -> None:
            url = route.request.url
            if url == self.origin or url.startswith(self.origin + "/"):
                route.continue_()
            else:
                self.outside.append(url)
                route.abort()

        context.route("**/*", guard)
        self.contexts.append(context)
        return context

    def signed_in(self, username: str, **options: Any) -> Page:
        """A page of a new context, signed in as ``username`` through the form."""
        page = self.context(**options).new_page()
        sign_in(page, username)
        return page

    def close(self) -> None:
        """Close every context."""
        for context in self.contexts:
            context.close()
        self.contexts.clear()


def sign_in(page: Page, username: str, password: str = PASSWORD) -> None:
    """Fill and send the sign-in form; waits for the overview."""
    page.goto("/login")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/$"))


def csrf_of(page: Page) -> str:
    """The CSRF token of the page's forms (the sign-out form carries one on every page)."""
    token = page.locator('input[name="csrf"]').first.get_attribute("value")
    assert token, "no CSRF token on the page"
    return token


def fits_width(page: Page) -> bool:
    """Whether the page has no horizontal scroll (its content is not wider than the view)."""
    return bool(
        page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
    )


def script_src(csp: str) -> str:
    """The ``script-src`` directive of a Content-Security-Policy (``default-src`` if none)."""
    directives = {
        part.strip().split(" ", 1)[0]: part.strip() for part in csp.split(";") if part.strip()
    }
    return directives.get("script-src", directives.get("default-src", ""))

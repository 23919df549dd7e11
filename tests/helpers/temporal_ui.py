"""The Temporal Web UI (2.42, the dev server's) as an operator uses it, driven by Playwright.

Selectors are the UI's own `data-testid` attributes and accessible roles and names. Every wait has a
condition and a deadline: the list page reads Temporal's visibility store, which is eventually
consistent, so a page that does not show what it should yet is reloaded until it does or the
deadline passes.

`step(name)` names what the test is doing: when it fails, a full-page screenshot and the page's HTML
are saved under `artifacts` and their path is printed and added to the error. `capture(name)` saves a
named screenshot into `screenshots` when one is given (the README's Operators images).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Locator, Page, expect

# Debian's `chromium` package: /usr/bin/chromium is a shell wrapper, the browser itself is here.
DEBIAN_CHROMIUM = Path('/usr/lib/chromium/chromium')
WAIT_S = 30.0


def chromium_executable(explicit: str | None) -> str:
    """The Chromium to drive: `explicit` (e.g. `$AGENTLEDGER_CHROMIUM`), Debian's, or `chromium` on PATH."""
    if explicit:
        if not Path(explicit).is_file():
            raise RuntimeError(f'AGENTLEDGER_CHROMIUM={explicit!r} is not a file')
        return explicit
    if DEBIAN_CHROMIUM.is_file():
        return str(DEBIAN_CHROMIUM)
    on_path = shutil.which('chromium')
    if on_path is None:
        raise RuntimeError("no Chromium: `bash scripts/bootstrap.sh` installs Debian's `chromium` package")
    return on_path


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = WAIT_S) -> None:
    """Await `check` until it is true; `AssertionError` naming `what` when `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f'not within {timeout:.0f} s: {what}')
        await asyncio.sleep(0.25)


async def wait_until_served(base_url: str, timeout: float = WAIT_S) -> None:
    """Wait until the UI's server answers (the dev server opens it after its frontend port)."""

    def answers() -> bool:
        try:
            with urllib.request.urlopen(base_url, timeout=5) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    async def served() -> bool:
        return await asyncio.to_thread(answers)

    await eventually(served, f'the UI answers at {base_url}', timeout)


class TemporalUI:
    """One browser page on the UI at `base_url`, namespace `default`."""

    def __init__(self, page: Page, base_url: str, artifacts: Path, screenshots: Path | None = None) -> None:
        self.page = page
        self.base_url = base_url.rstrip('/')
        self.artifacts = artifacts
        self.screenshots = screenshots
        self._steps = 0

    @asynccontextmanager
    async def step(self, name: str) -> AsyncIterator[None]:
        """Run a step of the scenario; on failure keep a full-page screenshot and the HTML of the page."""
        self._steps += 1
        try:
            yield
        except BaseException as error:
            stem = self.artifacts / f'{self._steps:02d}-{re.sub(r"[^a-z0-9]+", "-", name.lower())}'
            self.artifacts.mkdir(parents=True, exist_ok=True)
            try:
                await self.page.screenshot(path=f'{stem}.png', full_page=True)
                Path(f'{stem}.html').write_text(await self.page.content())
                kept = f'step {name!r} failed: screenshot and HTML in {stem}.png / {stem}.html'
            except Exception as unsaved:
                kept = f'step {name!r} failed; the page could not be saved: {unsaved!r}'
            print(kept)
            error.add_note(kept)
            raise

    async def capture(self, name: str, *, element: Locator | None = None, down_to: Locator | None = None) -> None:
        """Save `<screenshots>/<name>.png` when screenshots are asked for: the viewport, `element` alone,
        or the viewport down to the bottom of `down_to` (what is below it, such as a worker's stack
        trace with its file paths, stays out of the picture).
        """
        if self.screenshots is None:
            return
        self.screenshots.mkdir(parents=True, exist_ok=True)
        path = self.screenshots / f'{name}.png'
        await self.page.mouse.move(0, 0)  # no hover highlight where the last click was
        if element is not None:
            await element.screenshot(path=path)
            return
        clip = None
        if down_to is not None:
            box = await down_to.bounding_box()
            assert box is not None, f'{down_to} is not on the page'
            viewport = self.page.viewport_size
            assert viewport is not None
            clip = {'x': 0, 'y': 0, 'width': viewport['width'], 'height': box['y'] + box['height'] + 2}
        await self.page.screenshot(path=path, clip=clip)

    async def goto(self, path: str) -> None:
        await self.page.goto(self.base_url + path)

    # The workflow list.

    def _list_path(self, query: str) -> str:
        return '/namespaces/default/workflows?query=' + urllib.parse.quote(query)

    async def listed(self, timeout: float = WAIT_S) -> list[str]:
        """The workflow ids the list page shows, once it shows rows or says there are none."""
        rows = self.page.get_by_test_id('workflows-summary-configurable-table-row')
        empty = self.page.get_by_text('No Results', exact=True)
        await rows.first.or_(empty).wait_for(timeout=timeout * 1000)
        if await empty.is_visible():
            return []
        # The body cells of a row: status, workflow id, run id, type, start, end.
        cells = [row.get_by_test_id('workflows-summary-table-body-cell').nth(1) for row in await rows.all()]
        return [(await cell.inner_text()).strip() for cell in cells]

    async def wait_for_list(self, query: str, expected: set[str], timeout: float = WAIT_S) -> None:
        """Open the list filtered by `query`, reloading until it shows exactly the workflows `expected`."""
        await self.goto(self._list_path(query))
        seen: list[str] = []

        async def shown() -> bool:
            nonlocal seen
            seen = await self.listed()
            if sorted(seen) == sorted(expected):
                return True
            await self.page.reload()
            return False

        try:
            await eventually(shown, f'the list filtered by {query} shows exactly {sorted(expected)}', timeout)
        except AssertionError as error:
            error.add_note(f'it shows {sorted(seen)}')
            raise

    # One workflow.

    async def open_workflow(self, workflow_id: str) -> None:
        """Open the workflow's latest run."""
        await self.goto(f'/namespaces/default/workflows/{urllib.parse.quote(workflow_id)}')
        await self.page.get_by_test_id('workflow-id-heading').wait_for()

    async def wait_for_status(self, workflow_id: str, status: str, timeout: float = WAIT_S) -> None:
        """Open the workflow (reloading) until its latest run shows `status`."""
        await self.open_workflow(workflow_id)
        badge = self.page.locator('header').get_by_text(status, exact=True)

        async def shown() -> bool:
            if await badge.count() and await badge.first.is_visible():
                return True
            await self.open_workflow(workflow_id)
            return False

        await eventually(shown, f'workflow {workflow_id} shows {status}', timeout)

    def input_panel(self) -> Locator:
        """The Input code block of the open workflow's Input and Results panel."""
        return self.page.get_by_test_id('input-and-result').get_by_role('textbox').first

    # Actions.

    async def reset_to_first_workflow_task(self, reason: str) -> None:
        """A closed run's Reset action: choose the first workflow task, give `reason`, Confirm."""
        await self.page.get_by_role('button', name='Reset', exact=True).click()
        dialog = self.page.get_by_role('dialog', name='Reset Workflow')
        await dialog.get_by_test_id('workflow-reset-event-id-select-button').click()
        first_task = dialog.get_by_role('option').filter(has_text='WorkflowTaskCompleted').first
        await first_task.click()
        await dialog.get_by_role('listbox').wait_for(state='hidden')
        await dialog.get_by_test_id('reset-reason').fill(reason)
        # Signals and updates after the reset point are kept (the UI's default).
        await expect(dialog.locator('#reset-exclude-signals-checkbox')).not_to_be_checked()
        await expect(dialog.locator('#reset-exclude-updates-checkbox')).not_to_be_checked()
        await self.capture('reset-dialog', element=dialog)
        await dialog.get_by_role('button', name='Confirm').click()
        await dialog.wait_for(state='hidden')

    async def send_update(self, name: str, data: object) -> None:
        """Workflow actions → Send an Update: the update `name` with `data` as its JSON input, Submit."""
        await self.page.get_by_role('button', name='More Actions').click()
        await self.page.get_by_role('menuitem', name='Send an Update').click()
        dialog = self.page.get_by_role('dialog', name='Send an Update')
        await dialog.get_by_test_id('update-select-button').click()
        await dialog.get_by_role('option', name=name, exact=True).click()
        editor = dialog.locator('[contenteditable="true"]')
        await editor.click()
        await editor.fill(json.dumps(data))
        await self.capture('update-dialog', element=dialog)
        await dialog.get_by_role('button', name='Submit').click()
        await dialog.wait_for(state='hidden')

"""The pages the multi-reader front answers itself, instead of a reader's viewer.

Each page is plain HTML with no script and nothing loaded from elsewhere; its ``<main>`` has
an ``id`` that says which situation it reports, so tests and scripts can tell them apart.
"""

from __future__ import annotations

import html

from aiohttp import web

_STYLE = "font-family: sans-serif; background: #1e1e1e; color: #eee; margin: 3em;"


def _page(title: str, element_id: str, body_html: str, refresh_s: int | None = None) -> str:
    refresh = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">{refresh}
<title>{html.escape(title)}</title></head>
<body style="{_STYLE}">
<main id="{element_id}">
{body_html}
</main></body></html>
"""


def page_response(text: str, status: int, retry_after_s: int | None = None) -> web.Response:
    """An HTML answer that no browser or proxy keeps in its cache."""
    headers = {"Cache-Control": "no-store"}
    if retry_after_s is not None:
        headers["Retry-After"] = str(retry_after_s)
    return web.Response(status=status, text=text, content_type="text/html", headers=headers)


def all_in_use_page(max_readers: int, grace_s: float) -> str:
    """Every reader place is taken: say so, and when one frees up."""
    places = "one reader" if max_readers == 1 else f"{max_readers} readers"
    return _page(
        "MSK Workbench viewer: all readers' places are in use",
        "viewer-full",
        f"""<h1>All readers' places of this viewer are in use</h1>
<p>This MSK Workbench viewer gives every reader a viewer of their own and serves {places} at
a time (<code>mskwb serve --max-readers</code>). Each open viewer keeps its own case, so
no page ever shows another reader's patient.</p>
<p>Reload this page when another reader has closed theirs: a place is freed about
{max(1, round(grace_s))} s after its last page closes.</p>""",
    )


def starting_page() -> str:
    """The reader's own viewer is still starting: the page reloads itself every second."""
    return _page(
        "MSK Workbench viewer starting",
        "viewer-starting",
        """<h1>Starting your viewer...</h1>
<p>A viewer of your own is being started; this page opens it as soon as it is ready
(usually within a few seconds).</p>""",
        refresh_s=1,
    )


def stopped_page(reason: str) -> str:
    """The reader's viewer stopped without being asked to: say what happened and what next."""
    return _page(
        "MSK Workbench viewer stopped",
        "viewer-stopped",
        f"""<h1>Your viewer stopped</h1>
<p>{html.escape(reason)} The case it had open is closed; studies on the archive or PACS and
plan files already written are untouched.</p>
<p>Reload this page to start a new viewer.</p>""",
    )


def no_viewer_page() -> str:
    """A request that belongs to no open viewer (for example after the viewer was stopped)."""
    return _page(
        "MSK Workbench viewer closed",
        "viewer-closed",
        """<h1>This page's viewer is closed</h1>
<p>The viewer of this page was closed after its last page closed. Reload the page to start
a new one.</p>""",
    )

"""The tabs of the page, one module each (layout, callbacks and their wiring), composed by
:func:`xmr.app.ui.build_blocks`; :mod:`~xmr.app.tabs.format` holds the page's Markdown."""

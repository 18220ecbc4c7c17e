"""The References page stays in step with the chapters' citations on incremental builds.

sphinxcontrib-bibtex lists on the ``{bibliography}`` page only the works some page cites, but
its ``env-updated`` handler names no page to rewrite, so when a chapter's citations change and
the References page itself does not, Sphinx keeps the old page: a new citation then links to
an anchor that is not there (the browser check's "link to a missing anchor"). This extension,
listed in ``_config.yml`` after ``sphinxcontrib.bibtex``, asks Sphinx to rewrite every page that
holds a bibliography after each read, which is cheap (one page). ``bibtex_cite_id`` in
``_config.yml`` makes the anchors the citation keys (``#cite-rice2020overfitting``), so they
do not move when an entry is added.
"""

from __future__ import annotations

from typing import Iterable


def _bibliography_pages(app, env) -> Iterable[str]:
    try:
        domain = env.get_domain("cite")
    except Exception:  # sphinxcontrib.bibtex not loaded: nothing to keep in step
        return []
    return sorted({key.docname for key in getattr(domain, "bibliographies", {})})


def setup(app) -> dict:
    app.setup_extension("sphinxcontrib.bibtex")
    app.connect("env-updated", _bibliography_pages)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

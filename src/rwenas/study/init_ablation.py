"""The paper's Fig. 4: the along-search study for RWE with the five initialisation methods."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rwenas.errors import ConfigError
from rwenas.study.along_search import study_along_search
from rwenas.study.estimators import INIT_METHODS


def study_init(provider: Any, *, methods: Sequence[str] = INIT_METHODS,
               rwe_options: Mapping[str, Any] | None = None, driver: str = "rwe",
               **kwargs: Any) -> list[dict[str, Any]]:
    """:func:`study_along_search` for RWE under each initialisation method (Fig. 4): the
    estimators are ``rwe[<method>]``; the search is driven by plain RWE (``driver``)."""
    from rwenas.estimators.proxies import RWEEstimator
    from rwenas.estimators.rwe import INIT_METHODS as KNOWN

    bad = [m for m in methods if m not in KNOWN]
    if bad:
        raise ConfigError(f"unknown init method(s) {', '.join(bad)} (known: {', '.join(KNOWN)})")
    opts = dict(rwe_options or {})
    opts.pop("init", None)
    ests = {f"rwe[{m}]": RWEEstimator(init=m, **opts) for m in methods}
    options = dict(kwargs.pop("estimator_options", None) or {})
    options.setdefault(driver, opts if driver == "rwe" else {})
    kwargs.setdefault("title", f"RWE initialisation methods; NSGA-II driven by {driver} + MAdds")
    if driver == "rwe" and "default" in methods:
        driver = "rwe[default]"  # the same estimator: score once
    return study_along_search(provider, ests, driver=driver, estimator_options=options,
                              **kwargs)

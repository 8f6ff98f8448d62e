"""The paper's Fig. 4: RWE under the five initialisation methods, along NSGA-II searches (as
the paper) or on a bench's pool (every architecture of a source and half at once, with the
pool study's intervals and paired differences against the default initialisation)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rwenas.errors import ConfigError
from rwenas.study.along_search import study_along_search
from rwenas.study.estimators import INIT_METHODS


def _init_estimators(methods: Sequence[str], rwe_options: Mapping[str, Any] | None
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``{"rwe[<method>]": RWEEstimator}`` for ``methods`` (checked) and the other options."""
    from rwenas.estimators.proxies import RWEEstimator
    from rwenas.estimators.rwe import INIT_METHODS as KNOWN

    bad = [m for m in methods if m not in KNOWN]
    if bad or not methods:
        raise ConfigError(f"unknown init method(s) {', '.join(bad) or '(none given)'} "
                          f"(known: {', '.join(KNOWN)})")
    opts = dict(rwe_options or {})
    opts.pop("init", None)
    return {f"rwe[{m}]": RWEEstimator(init=m, **opts) for m in methods}, opts


def study_init_pool(bench_dir: Any, *, methods: Sequence[str] = INIT_METHODS,
                    rwe_options: Mapping[str, Any] | None = None,
                    **kwargs: Any) -> dict[str, Any]:
    """Fig. 4 on a bench's pool: :func:`rwenas.study.pool.correlate_pool` with RWE under each
    initialisation method (``rwe[<method>]``), the paired differences taken against
    ``rwe[default]`` (or the first method when the default is not among them)."""
    from rwenas.study.pool import correlate_pool

    ests, _ = _init_estimators(methods, rwe_options)
    reference = "rwe[default]" if "default" in methods else f"rwe[{methods[0]}]"
    kwargs.setdefault("title", "RWE initialisation methods on the bench pool (Fig. 4)")
    return correlate_pool(bench_dir, ests, reference=reference, **kwargs)


def study_init(provider: Any, *, methods: Sequence[str] = INIT_METHODS,
               rwe_options: Mapping[str, Any] | None = None, driver: str = "rwe",
               **kwargs: Any) -> list[dict[str, Any]]:
    """:func:`study_along_search` for RWE under each initialisation method (Fig. 4): the
    estimators are ``rwe[<method>]``; the search is driven by plain RWE (``driver``)."""
    ests, opts = _init_estimators(methods, rwe_options)
    options = dict(kwargs.pop("estimator_options", None) or {})
    options.setdefault(driver, opts if driver == "rwe" else {})
    kwargs.setdefault("title", f"RWE initialisation methods; NSGA-II driven by {driver} + MAdds")
    if driver == "rwe" and "default" in methods:
        driver = "rwe[default]"  # the same estimator: score once
    return study_along_search(provider, ests, driver=driver, estimator_options=options,
                              **kwargs)

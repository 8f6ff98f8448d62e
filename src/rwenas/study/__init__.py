"""The estimator study (SPEC §7): how well does each estimator rank architectures?

Two studies, both against a ground truth of test accuracies:

* :func:`correlate_pool` — over a fixed bench pool (:mod:`rwenas.study.bench`), selected by source
  and by half (tuning or confirmation): Spearman and Kendall of every estimator against the
  bench's ground truth with bootstrap intervals, paired differences to RWE, partial
  correlations at equal cost and the truth's reliability (:mod:`rwenas.study.correlation`).
* :func:`study_along_search` — as in the paper's Fig. 3: NSGA-II searches (one estimator, the
  *driver*, plus MAdds as objectives), and at every generation the Spearman correlation of
  every estimator over the union of parents and offspring, against a ground-truth provider
  (:class:`BenchProvider` trains missing architectures on demand at the bench's budget into
  a separate cache, never into the bench's pool; :class:`NB301Provider` queries
  NAS-Bench-301). Mean ± std per
  generation over seeds. :func:`study_init` is the same study for RWE with the five
  initialisation methods (Fig. 4).

Signs: every estimator's ``value`` is lower-is-better, so correlations are computed between
``-value`` and accuracy (a perfect estimator scores +1).

Estimator scores use one seed per architecture (``derive_seed(seed, key)``, as the search
does) and are cached by (estimator, key), so an architecture met again (in a later
generation or another search seed) is not scored again.
"""

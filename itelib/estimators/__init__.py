"""The frame every estimator shares: the lifecycle (:mod:`.base`), the one writer of the fitted
state (:mod:`.fitted`), the one list of estimator classes (:mod:`.registry`), the unseen-site
rule (:mod:`.sites`) and saving (:mod:`.persistence`).

A new estimator is a constructor, its option checks and the hooks of
:class:`~itelib.estimators.base.ITEEstimator`; listing it in the registry makes it loadable,
usable in studies and on the command line.
"""

"""Priors of the hierarchical treatment-effect model, on the standardized scale.

The outcome is standardized with the training mean and sd and every covariate with its training
mean and sd, so "weakly informative" has one meaning for every data set: a prior sd of 1 is an
effect the size of the outcome's whole spread.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["HierarchicalPriors"]


@dataclass(frozen=True)
class HierarchicalPriors:
    """Prior scales of :class:`~itelib.HierarchicalITE` (standardized outcome and covariates).

    Parameters
    ----------
    intercept_sd : float
        Normal prior sd of the population intercept ``alpha``.
    prognostic_sd : float
        Normal prior sd of each prognostic coefficient ``beta_j``.
    effect_sd : float
        Normal prior sd of the average treatment effect ``tau0``.
    site_intercept_sd : float
        Half-normal prior scale of ``sigma_site``, the sd of the site intercepts.
    site_effect_sd : float
        Half-normal prior scale of ``sigma_site_effect``, the sd of the site treatment effects.
    noise_sd : float
        Half-normal prior scale of the residual sd ``sigma``.
    expected_modifiers : float or None
        Prior guess ``p0`` of how many covariates modify the effect; sets the horseshoe's global
        scale ``p0 / (p - p0) * sigma / sqrt(n)`` (Piironen & Vehtari 2017, eq. 3.12).
        None: ``max(1, p / 5)``.
    slab_scale : float
        Scale ``s`` of the regularized horseshoe's slab: the size of a large effect modifier.
    slab_df : float
        Degrees of freedom ``nu`` of the slab; ``c^2 ~ InvGamma(nu/2, nu s^2/2)``.
    smooth_sd : float
        Half-normal prior scale of each smooth prognostic term's GP amplitude
        (``prognosis="additive"``).
    effect_smooth_sd : float
        Half-normal prior scale of each smooth effect term's GP amplitude
        (``effect_modifiers="additive"``), smaller than the prognostic one so an effect stays
        near its linear part unless the data insist.
    smooth_lengthscale_shape, smooth_lengthscale_scale : float
        Inverse-gamma prior of each smooth term's length-scale (standardized covariate units).
        The default InvGamma(5, 2) (mode 0.33, mean 0.5) lets a term bend at a kink such as
        Hahn et al.'s |x3 - 1| (a flatter prior diverged there; see ``docs/decisions.md``).
    effect_smooth_lengthscale_shape, effect_smooth_lengthscale_scale : float
        The same for the smooth effect terms. The default InvGamma(5, 6) (mode 1, mean 1.5):
        an effect that changes over about one sd of a covariate, smoother than a prognosis
        may be; the prognostic prior's wiggles fitted noise into the patient effects
        (``docs/decisions.md``).

    Notes
    -----
    Model, for patient ``i`` in site ``s``::

        y_i = alpha + a_s + x_i·beta + t_i·(tau0 + b_s + x_i·gamma) + e_i,   e_i ~ N(0, sigma)
        a_s = sigma_site·za_s,  b_s = sigma_site_effect·zb_s,  za_s, zb_s ~ N(0, 1)
        gamma_j = tau_hs·lambda~_j·zg_j  (regularized horseshoe, non-centred)

    The half-Cauchy scales of the horseshoe are written as ``N+(0, 1)·sqrt(InvGamma(1/2, 1/2))``,
    which is the same distribution with lighter-tailed pieces that NUTS explores without
    divergences.
    """

    intercept_sd: float = 1.0
    prognostic_sd: float = 1.0
    effect_sd: float = 1.0
    site_intercept_sd: float = 1.0
    site_effect_sd: float = 0.5
    noise_sd: float = 1.0
    expected_modifiers: float | None = None
    slab_scale: float = 1.0
    slab_df: float = 4.0
    smooth_sd: float = 1.0
    effect_smooth_sd: float = 0.3
    smooth_lengthscale_shape: float = 5.0
    smooth_lengthscale_scale: float = 2.0
    effect_smooth_lengthscale_shape: float = 5.0
    effect_smooth_lengthscale_scale: float = 6.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value is None:
                continue
            if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
                raise ValueError(
                    f"HierarchicalPriors.{name} must be a positive number; got {value!r}."
                )

    def global_scale(self, p: int, n: int) -> float:
        """Horseshoe global scale ``tau_0 = p0 / (p - p0) / sqrt(n)`` (times sigma in the model)."""
        p0 = self.expected_modifiers if self.expected_modifiers is not None else max(1.0, p / 5)
        p0 = min(p0, p - 0.5) if p > 1 else 0.5
        return p0 / (p - p0) / n**0.5

    def to_dict(self) -> dict:
        """JSON-safe dictionary of the prior scales."""
        return asdict(self)

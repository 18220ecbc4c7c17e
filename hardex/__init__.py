"""hardex: example difficulty, DPLS and adversarial training, after Lee et al. (JMLR 2025)."""

__version__ = "0.1.0"

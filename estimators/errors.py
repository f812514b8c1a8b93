"""Errors a user can cause when naming or configuring an estimator."""


class EstimatorError(ValueError):
    """An unknown estimator, a duplicate name, or a parameter outside its valid range."""

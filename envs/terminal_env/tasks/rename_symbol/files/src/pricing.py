def compute_total(prices):
    """The sum of ``prices``."""
    return sum(prices)

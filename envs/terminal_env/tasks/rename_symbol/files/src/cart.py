from pricing import compute_total


def cart_total(items):
    return compute_total(price for _, price in items)

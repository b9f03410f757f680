from cart import cart_total
from pricing import compute_total

ITEMS = [("tea", 12), ("cake", 20)]

if __name__ == "__main__":
    print(cart_total(ITEMS) + compute_total([4, 6]))

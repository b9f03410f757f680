cat > inventory.py <<'PY'
"""A tiny inventory: lines of "name, quantity, unit price"."""


def parse_line(line):
    name, quantity, price = line.split(",")
    return name.strip(), int(quantity), float(price)


def total_value(lines):
    total = 0.0
    for line in lines:
        _, quantity, price = parse_line(line)
        total += quantity * price
    return total
PY

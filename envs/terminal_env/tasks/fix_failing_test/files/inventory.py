"""A tiny inventory: lines of "name, quantity, unit price"."""


def parse_line(line):
    name, price, quantity = line.split(",")
    return name.strip(), int(quantity), float(price)


def total_value(lines):
    total = 0.0
    for line in lines:
        _, quantity, price = parse_line(line)
        total = quantity * price
    return total

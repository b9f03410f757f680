from inventory import parse_line, total_value


def test_parse_line():
    assert parse_line("apple, 3, 0.5") == ("apple", 3, 0.5)


def test_total_value_of_one_line():
    assert total_value(["pear,4,2.0"]) == 8.0


def test_total_value_of_several_lines():
    assert total_value(["apple,3,0.5", "pear,2,1.25", "fig, 10, 0.1"]) == 5.0

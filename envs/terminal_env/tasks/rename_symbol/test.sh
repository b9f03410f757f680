set -e
! grep -rq compute_total src
grep -q "def sum_prices" src/pricing.py
test "$(python3 src/main.py)" = 42

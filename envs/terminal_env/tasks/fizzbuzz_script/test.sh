set -eu
test -x fizzbuzz.sh
./fizzbuzz.sh > "$TESTS_DIR/actual.txt"
cmp -s "$TESTS_DIR/actual.txt" "$TESTS_DIR/expected.txt"

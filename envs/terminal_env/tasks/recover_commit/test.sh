set -e
cd project
git log --format=%s main | grep -qx "add feature"
test "$(git rev-parse --abbrev-ref HEAD)" = main
test "$(cat feature.txt)" = feature
test -z "$(git status --porcelain)"

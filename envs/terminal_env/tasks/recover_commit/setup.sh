set -e
git init -q -b main project
cd project
echo "v1" > app.txt
git add app.txt && git commit -qm "first"
echo "feature" > feature.txt
git add feature.txt && git commit -qm "add feature"
git reset -q --hard HEAD~1
echo "scratch" > scratch.txt

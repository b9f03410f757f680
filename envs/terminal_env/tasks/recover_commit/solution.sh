cd project
rm -f scratch.txt
git reset -q --hard 'HEAD@{1}'

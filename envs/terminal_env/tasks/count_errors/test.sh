test "$(tr -d ' \n' < answer.txt)" = "17"

grep -rlw ERROR logs --include='*.log' | wc -l > answer.txt

# A deterministic tree: .log files with and without ERROR, decoys in other files and cases.
for service in api worker cron; do
  for day in 1 2 3 4 5 6 7; do
    dir="logs/$service/2024-01-0$day"
    mkdir -p "$dir"
    for n in 1 2 3; do
      file="$dir/run$n.log"
      echo "INFO start $service $day $n" > "$file"
      if (( (day * n + ${#service}) % 4 == 0 )); then echo "ERROR failed $n" >> "$file"; fi
      if (( (day + n) % 5 == 0 )); then echo "error: lowercase, not counted" >> "$file"; fi
      echo "INFO end" >> "$file"
    done
    echo "ERROR in a text file" > "$dir/notes.txt"
  done
done
echo "ERROR" > "logs/api/archive.log.gz"

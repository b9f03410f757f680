grep -rl compute_total src | xargs sed -i 's/compute_total/sum_prices/g'

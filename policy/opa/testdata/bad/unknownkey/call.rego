package sqlgate.call

default allow := false

# A typo: the obligation is max_rows.
max_row := 10

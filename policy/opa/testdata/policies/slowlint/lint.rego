package sqlgate.lint

# Ten billion iterations, none of which holds: a lint that never finishes in
# time.
problems contains "never" if {
	some i in numbers.range(1, 100000)
	some j in numbers.range(1, 100000)
	i * j < 0
}

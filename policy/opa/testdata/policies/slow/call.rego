package sqlgate.call

default allow := false

# Nine million iterations: far longer than any evaluation timeout.
allow if {
	products := [x | some i in numbers.range(1, 3000); some j in numbers.range(1, 3000); x := i * j]
	count(products) > 0
}

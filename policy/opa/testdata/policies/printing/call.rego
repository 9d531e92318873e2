package sqlgate.call

import data.sqlgate.limits

default allow := false

allow if {
	print("amount is", input.params.amount)
	trace(sprintf("checking %v", [input.params.amount]))
	input.params.amount <= limits.amount
}

reasons contains "amount over the limit" if {
	input.params.amount > limits.amount
}

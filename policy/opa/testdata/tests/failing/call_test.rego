package sqlgate.call_test

import data.sqlgate.call

test_ops_allowed if {
	call.allow with input as {"principal": {"groups": ["ops"]}}
}

# Wrong on purpose: support is not allowed.
test_support_allowed if {
	call.allow with input as {"principal": {"groups": ["support"]}}
}
